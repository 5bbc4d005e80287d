//! `ember run matrix-multiply --n N --block B`: the product of two seeded random N×N
//! matrices, split into B×B blocks (the last row and column of blocks are smaller when B
//! does not divide N), computed as a join and a reduce through the shuffle:
//!
//! ```text
//!  A blocks (i,k) keyed by k ─┐
//!                             ├─ join on k ─▶ A(i,k)·B(k,j) keyed by (i,j) ─▶ reduce_by_key (+) ─▶ C(i,j)
//!  B blocks (k,j) keyed by k ─┘
//! ```
//!
//! Blocks are generated in the executors from their coordinates (each element is a
//! function of the seed, the matrix and its position), so only coordinates travel in the
//! plan. The result is the Frobenius norm of the product; for N ≤ 512 it is checked against
//! a single-threaded product of the same matrices.

use serde::{Deserialize, Serialize};

use ember::Session;
use ember::{EmberError, Result};
use ember::{FunctionRegistry, TypedFunctions};

/// Where one block of one matrix lies, and how to generate it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct BlockSpec {
    /// Block row.
    row: i64,
    /// Block column.
    col: i64,
    /// Matrix size N.
    n: i64,
    /// Block size B.
    block: i64,
    /// Which matrix: 0 for A, 1 for B.
    matrix: u64,
    /// The seed of both matrices.
    seed: u64,
}

/// A dense block, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Block {
    rows: i64,
    cols: i64,
    values: Vec<f64>,
}

/// A pair of blocks that meet in the join: `(k, ((i, A(i,k)), (j, B(k,j))))`.
type BlockPair = (i64, ((i64, Block), (i64, Block)));

/// The result of [`matrix_multiply`].
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixProduct {
    /// Frobenius norm of A·B computed on the cluster.
    pub frobenius: f64,
    /// Blocks of the product that came back (ceil(N/B)²).
    pub blocks: usize,
    /// For N ≤ 512: the norm of the single-threaded product and the largest difference
    /// between any element of the two products.
    pub reference: Option<(f64, f64)>,
}

/// Element (i, j) of matrix `matrix` in [-1, 1): a SplitMix64 hash of its position.
fn element(seed: u64, matrix: u64, n: i64, i: i64, j: i64) -> f64 {
    let position = (i * n + j) as u64;
    let mut z = seed
        .wrapping_add(matrix.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(position.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

fn block_extent(index: i64, block: i64, n: i64) -> i64 {
    block.min(n - index * block)
}

fn generate(spec: &BlockSpec) -> Block {
    let rows = block_extent(spec.row, spec.block, spec.n);
    let cols = block_extent(spec.col, spec.block, spec.n);
    let mut values = Vec::with_capacity((rows * cols) as usize);
    for r in 0..rows {
        for c in 0..cols {
            let i = spec.row * spec.block + r;
            let j = spec.col * spec.block + c;
            values.push(element(spec.seed, spec.matrix, spec.n, i, j));
        }
    }
    Block { rows, cols, values }
}

fn multiply(a: &Block, b: &Block) -> Block {
    let (m, k, n) = (a.rows as usize, a.cols as usize, b.cols as usize);
    let mut values = vec![0.0; m * n];
    for i in 0..m {
        let out = &mut values[i * n..(i + 1) * n];
        for p in 0..k {
            let x = a.values[i * k + p];
            let row = &b.values[p * n..(p + 1) * n];
            for (o, y) in out.iter_mut().zip(row) {
                *o += x * y;
            }
        }
    }
    Block {
        rows: a.rows,
        cols: b.cols,
        values,
    }
}

/// Registers the example's functions in `functions` (idempotent).
pub fn register_matrix_functions(functions: &FunctionRegistry) -> Result<()> {
    // A's block (i, k) keyed by k, carrying i.
    functions.register_map_fn("matrix.a_block", |spec: BlockSpec| {
        (spec.col, (spec.row, generate(&spec)))
    })?;
    // B's block (k, j) keyed by k, carrying j.
    functions.register_map_fn("matrix.b_block", |spec: BlockSpec| {
        (spec.row, (spec.col, generate(&spec)))
    })?;
    functions.register_map_fn("matrix.multiply", |(_k, ((i, a), (j, b))): BlockPair| {
        ((i, j), multiply(&a, &b))
    })?;
    functions.register_reducer::<(i64, i64), Block>("matrix.add", |mut x, y| {
        for (a, b) in x.values.iter_mut().zip(&y.values) {
            *a += b;
        }
        x
    })?;
    Ok(())
}

/// Multiplies the two seeded N×N matrices on the cluster in B×B blocks.
pub async fn matrix_multiply(
    session: &Session,
    n: u64,
    block: u64,
    seed: u64,
) -> Result<MatrixProduct> {
    let bad = |key: &str, message: String| EmberError::Config {
        key: key.into(),
        message,
    };
    let n = i64::try_from(n)
        .ok()
        .filter(|n| (1..=16_384).contains(n))
        .ok_or_else(|| bad("--n", format!("expected 1 to 16384, not {n}")))?;
    let block = i64::try_from(block)
        .ok()
        .filter(|b| (1..=n).contains(b))
        .ok_or_else(|| bad("--block", format!("expected 1 to --n ({n}), not {block}")))?;
    register_matrix_functions(session.functions())?;
    let per_side = (n + block - 1) / block;
    let specs = |matrix: u64| -> Vec<BlockSpec> {
        (0..per_side)
            .flat_map(|row| {
                (0..per_side).map(move |col| BlockSpec {
                    row,
                    col,
                    n,
                    block,
                    matrix,
                    seed,
                })
            })
            .collect()
    };
    let a = session
        .parallelize(specs(0))?
        .map::<(i64, (i64, Block))>("matrix.a_block")?;
    let b = session
        .parallelize(specs(1))?
        .map::<(i64, (i64, Block))>("matrix.b_block")?;
    let product = a
        .join(&b)?
        .map::<((i64, i64), Block)>("matrix.multiply")?
        .reduce_by_key("matrix.add")?
        .collect_rows()
        .await?;
    let frobenius = product
        .iter()
        .flat_map(|(_, block)| &block.values)
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt();
    let reference = (n <= 512).then(|| check(&product, n, block, seed));
    Ok(MatrixProduct {
        frobenius,
        blocks: product.len(),
        reference,
    })
}

/// The single-threaded product's norm, and the largest element difference to `blocks`.
fn check(blocks: &[((i64, i64), Block)], n: i64, block: i64, seed: u64) -> (f64, f64) {
    let size = n as usize;
    let a: Vec<f64> = (0..n * n)
        .map(|p| element(seed, 0, n, p / n, p % n))
        .collect();
    let b: Vec<f64> = (0..n * n)
        .map(|p| element(seed, 1, n, p / n, p % n))
        .collect();
    let full = |values: Vec<f64>| Block {
        rows: n,
        cols: n,
        values,
    };
    let c = multiply(&full(a), &full(b));
    let norm = c.values.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut worst: f64 = 0.0;
    for ((bi, bj), piece) in blocks {
        for r in 0..piece.rows {
            for col in 0..piece.cols {
                let i = (bi * block + r) as usize;
                let j = (bj * block + col) as usize;
                let ours = piece.values[(r * piece.cols + col) as usize];
                worst = worst.max((ours - c.values[i * size + j]).abs());
            }
        }
    }
    (norm, worst)
}
