//! forest-train's HTML report ([`train_report_page`]): feature importances, predicted
//! against actual on held-out rows, error by label range (or the confusion matrix and the
//! error per class of a classifier), and how the forest was trained.

use super::TrainOutcome;
use super::train::Task;
use ember::Result;
use ember::report::chart::{Bar, bars, heat_map, scatter};
use ember::report::format::{count as grouped, percent, short};
use ember::report::table::Cell;
use ember::report::{Page, Table};

/// How the training was run, for the report's header.
pub struct TrainFacts<'a> {
    /// The input file or folder.
    pub input: &'a str,
    /// Where the model was saved.
    pub model_path: &'a str,
    /// Executors of the cluster.
    pub executors: usize,
    /// Seconds the whole run took.
    pub seconds: f64,
}

/// The report of a trained forest.
pub fn train_report_page(outcome: &TrainOutcome, facts: &TrainFacts<'_>) -> Result<Page> {
    let model = &outcome.model;
    let kind = match model.task {
        Task::Regression => "regression".to_string(),
        Task::Classification { classes } => format!("classification into {classes} classes"),
    };
    let mut page = Page::new(format!("Random forest: {}", model.label));
    page.line(format!(
        "{} trees ({kind}) trained on {} rows of {} in {:.2} s on {} executors",
        model.trees.len(),
        grouped(outcome.train_rows.into()),
        facts.input,
        facts.seconds,
        facts.executors
    ));
    page.line(format!("Model saved to {}", facts.model_path));
    page.fact(grouped(model.trees.len() as i128), "trees");
    page.fact(grouped(outcome.train_rows.into()), "training rows");
    if let Some(evaluation) = &outcome.evaluation {
        page.fact(grouped(evaluation.rows.into()), "test rows");
        if let Some(rmse) = evaluation.rmse {
            page.fact(format!("{rmse:.2}"), "RMSE on test rows");
        }
        if let Some(r2) = evaluation.r2 {
            page.fact(format!("{r2:.4}"), "R² on test rows");
        }
        if let Some(accuracy) = evaluation.accuracy {
            page.fact(percent(accuracy), "accuracy on test rows");
        }
    }

    // Feature importances, largest first.
    let importances = model.feature_importances();
    let mut ranked: Vec<(&str, f64)> = model
        .features
        .iter()
        .map(|f| f.name.as_str())
        .zip(importances.iter().copied())
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let importance_bars: Vec<Bar> = ranked
        .iter()
        .map(|(name, share)| Bar {
            label: (*name).to_string(),
            value: *share,
            note: percent(*share),
        })
        .collect();
    let section = page.section("importances", "Feature importances");
    section.chart(
        "importances",
        "Each feature's share of the impurity its splits removed (gain weighted by rows), \
         per tree, averaged over the trees, as Spark's featureImportances.",
        bars(
            "Feature importances",
            "share of impurity reduction",
            &importance_bars,
            &|v| percent(v),
        )?,
    );
    let mut table = Table::new(
        "importances-table",
        "Feature importances",
        &[("feature", false), ("kind", false), ("importance", true)],
    );
    for (name, share) in &ranked {
        let categorical = model
            .features
            .iter()
            .find(|f| f.name == *name)
            .is_some_and(|f| f.categorical);
        table.push(vec![
            Cell::text(*name),
            Cell::text(if categorical {
                "categorical"
            } else {
                "numeric"
            }),
            Cell::number(format!("{:.4}", share), *share),
        ]);
    }
    section.table(table);

    let diagnostics = outcome.diagnostics.as_ref();
    match (model.task, diagnostics) {
        (Task::Regression, Some(d)) => {
            page.section("fit", "Predicted against actual").chart(
                "fit",
                format!(
                    "{} held-out rows (a seeded sample of the test rows); on the grey line \
                     the prediction is exact.",
                    grouped(d.sample.len() as i128)
                ),
                scatter(
                    &format!("Predicted against actual {}", model.label),
                    (&format!("actual {}", model.label), "predicted"),
                    &d.sample,
                    &|v| short(v),
                )?,
            );
            let error_bars: Vec<Bar> = d
                .ranges
                .iter()
                .map(|r| Bar {
                    label: r.range(),
                    value: r.mae,
                    note: format!("{:.2} over {} rows", r.mae, grouped(r.rows.into())),
                })
                .collect();
            let section = page.section("errors", format!("Error by {} range", model.label));
            section.chart(
                "errors",
                format!(
                    "Mean absolute error of the test rows in each range of the actual {}.",
                    model.label
                ),
                bars(
                    &format!("Mean absolute error by {} range", model.label),
                    "mean absolute error",
                    &error_bars,
                    &|v| short(v),
                )?,
            );
            let mut table = Table::new(
                "errors-table",
                format!("Error by {} range (test rows)", model.label),
                &[
                    ("range", false),
                    ("rows", true),
                    ("mean absolute error", true),
                    ("RMSE", true),
                    ("bias (predicted - actual)", true),
                ],
            );
            for r in &d.ranges {
                table.push(vec![
                    Cell::text(r.range()),
                    Cell::number(grouped(r.rows.into()), r.rows as f64),
                    Cell::number(format!("{:.2}", r.mae), r.mae),
                    Cell::number(format!("{:.2}", r.rmse), r.rmse),
                    Cell::number(format!("{:+.2}", r.bias), r.bias),
                ]);
            }
            section.table(table);
        }
        (Task::Classification { .. }, Some(d)) => {
            page.section("fit", "Predicted against actual").chart(
                "fit",
                "Test rows by actual class (rows) and predicted class (columns), each cell \
                 shaded by its share of its row.",
                heat_map(
                    &format!("Confusion matrix of {}", model.label),
                    ("actual", "predicted"),
                    &model.classes,
                    &d.confusion,
                )?,
            );
            let error_bars: Vec<Bar> = model
                .classes
                .iter()
                .zip(&d.confusion)
                .enumerate()
                .map(|(i, (class, row))| {
                    let total: u64 = row.iter().sum();
                    let wrong = total - row.get(i).copied().unwrap_or(0);
                    let share = if total > 0 {
                        wrong as f64 / total as f64
                    } else {
                        0.0
                    };
                    Bar {
                        label: class.clone(),
                        value: share,
                        note: format!("{} of {} rows", percent(share), grouped(total.into())),
                    }
                })
                .collect();
            page.section("errors", "Error by class").chart(
                "errors",
                "Share of each actual class's test rows that were predicted as another class.",
                bars(
                    "Error rate by class",
                    "share misclassified",
                    &error_bars,
                    &|v| percent(v),
                )?,
            );
        }
        (_, None) => {
            page.section("fit", "Predicted against actual")
                .text("No held-out rows (--test-fraction 0), so nothing to compare with.");
        }
    }

    let params = &model.params;
    let [fit, grow, evaluate] = outcome.seconds;
    let mut table = Table::new(
        "training",
        "How it was trained",
        &[("setting", false), ("value", false)],
    );
    let nodes: usize = model.trees.iter().map(|t| t.nodes.len()).sum();
    let depth = model.trees.iter().map(|t| t.depth()).max().unwrap_or(0);
    for (name, value) in [
        ("trees", params.trees.to_string()),
        (
            "max depth (reached)",
            format!("{} ({depth})", params.max_depth),
        ),
        ("max bins", params.max_bins.to_string()),
        ("feature subset", params.feature_subset.clone()),
        ("test fraction", params.test_fraction.to_string()),
        ("seed", params.seed.to_string()),
        ("nodes", grouped(nodes as i128)),
        ("passes over the rows", outcome.report.passes.to_string()),
        (
            "seconds: features, trees, evaluation",
            format!("{fit:.2}, {grow:.2}, {evaluate:.2}"),
        ),
    ] {
        table.push(vec![Cell::text(name), Cell::text(value)]);
    }
    page.section("training", "Training").table(table);
    page.footer("Made by ember run forest-train.");
    Ok(page)
}
