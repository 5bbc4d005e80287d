//! Bottom-up plan rewriting that keeps shared subplans shared.
//!
//! The planner's rewrites put one subplan (a broadcast build side) in several places of a
//! plan as the same `Arc`, and the stage cutter turns such a shared exchange into one stage
//! read several times. DataFusion's `transform_up` would rewrite each place on its own and
//! break the sharing; [`rewrite_up`] rewrites every node once, by address, and hands the
//! same result to every parent.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::error::Result;
use datafusion::physical_plan::{ExecutionPlan, replace_children_if_necessary};

/// Rewrites `plan` bottom-up: each node gets its rewritten children, then `f`.
pub(crate) fn rewrite_up(
    plan: Arc<dyn ExecutionPlan>,
    f: &mut dyn FnMut(Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut done = HashMap::new();
    visit(&plan, f, &mut done)
}

/// The rewrite of `plan`; `done` maps the address of every original node visited so far
/// (all alive: `plan`'s root holds them) to its rewrite.
fn visit(
    plan: &Arc<dyn ExecutionPlan>,
    f: &mut dyn FnMut(Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>>,
    done: &mut HashMap<usize, Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let address = Arc::as_ptr(plan) as *const () as usize;
    if let Some(rewritten) = done.get(&address) {
        return Ok(Arc::clone(rewritten));
    }
    let children = plan
        .children()
        .into_iter()
        .map(|child| visit(child, f, done))
        .collect::<Result<Vec<_>>>()?;
    let rebuilt = if children.is_empty() {
        Arc::clone(plan)
    } else {
        replace_children_if_necessary(Arc::clone(plan), children)?
    };
    let rewritten = f(rebuilt)?;
    done.insert(address, Arc::clone(&rewritten));
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::union::UnionExec;

    #[test]
    fn a_subplan_in_two_places_is_rewritten_once_and_stays_shared() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let shared: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::clone(&schema)));
        let plan =
            UnionExec::try_new(vec![Arc::clone(&shared), Arc::clone(&shared)]).expect("union");
        let mut calls = 0;
        let rewritten = rewrite_up(plan, &mut |node| {
            calls += 1;
            if node.downcast_ref::<EmptyExec>().is_some() {
                Ok(Arc::new(EmptyExec::new(node.schema()).with_partitions(2)))
            } else {
                Ok(node)
            }
        })
        .expect("rewrites");
        assert_eq!(calls, 2, "the empty scan once, the union once");
        let children = rewritten.children();
        assert!(
            Arc::ptr_eq(children[0], children[1]),
            "still one shared node"
        );
        assert!(!Arc::ptr_eq(children[0], &shared), "and a rewritten one");
    }
}
