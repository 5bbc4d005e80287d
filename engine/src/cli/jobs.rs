//! The pipelines that `ember run NAME` runs, as a value: a binary adds its own [`Job`]s to
//! the [`Registry`] that [`main_with`](super::main_with) hands it, next to its functions.
//! Each job declares its options with clap (`#[derive(clap::Args)]`), so `ember run NAME
//! --help` shows them and a wrong one is refused before anything runs.
//!
//! ```no_run
//! use ember::cli::{ClusterArgs, Job};
//!
//! #[derive(clap::Args)]
//! struct CountArgs {
//!     /// The file to count the rows of.
//!     path: String,
//!     #[command(flatten)]
//!     cluster: ClusterArgs,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     ember::cli::main_with(|registry| {
//!         registry.add_job(Job::new(
//!             "count",
//!             "Count the rows of a Parquet file",
//!             |args: CountArgs, context| async move {
//!                 let (session, bar) = context.session(&args.cluster).await?;
//!                 let path = args.path.replace('\'', "''");
//!                 let result = session
//!                     .sql(&format!("SELECT count(*) FROM '{path}'"))
//!                     .await;
//!                 ember::cli::finish_progress(bar.as_deref());
//!                 ember::cli::print_result(&result?, ember::OutputFormat::Table)?;
//!                 Ok(())
//!             },
//!         ))
//!     })
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use clap::ArgMatches;
use futures::future::BoxFuture;

use super::common::{ClusterArgs, new_session};
use crate::progress::ProgressBar;
use crate::{EmberError, FunctionRegistry, Session};

/// What a binary adds to the `ember` command: the functions its sessions and executors
/// carry (the registry dereferences to a [`FunctionRegistry`], which starts with the
/// built-ins) and the jobs of `ember run`.
pub struct Registry {
    functions: FunctionRegistry,
    jobs: Vec<Job>,
}

impl Registry {
    /// A registry with the built-in functions and no jobs.
    pub(super) fn new() -> Self {
        Self {
            functions: crate::builtin_functions(),
            jobs: Vec::new(),
        }
    }

    /// The functions the command's sessions plan with and its executors run.
    pub fn functions(&self) -> &FunctionRegistry {
        &self.functions
    }

    /// Adds a job to `ember run`; a second job under a name already taken is refused.
    pub fn add_job(&mut self, job: Job) -> crate::Result<()> {
        if self.job(&job.name).is_some() {
            return Err(EmberError::Config {
                key: "ember run".into(),
                message: format!("a job named {:?} is already registered", job.name),
            });
        }
        self.jobs.push(job);
        Ok(())
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|job| job.name == name)
    }

    /// The registered jobs, in the order they were added.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The names of the jobs, for messages: `a, b, c`, or a sentence when there are none.
    pub(super) fn job_names(&self) -> String {
        if self.jobs.is_empty() {
            return "none in this binary".to_string();
        }
        let names: Vec<&str> = self.jobs.iter().map(Job::name).collect();
        names.join(", ")
    }
}

impl Deref for Registry {
    type Target = FunctionRegistry;

    fn deref(&self) -> &FunctionRegistry {
        &self.functions
    }
}

/// The body of a job, with its options already parsed out of its arguments.
type Body =
    Arc<dyn Fn(&ArgMatches, JobContext) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// A pipeline `ember run NAME` runs: its name, one line about it, its options and its
/// body.
#[derive(Clone)]
pub struct Job {
    name: String,
    command: clap::Command,
    body: Body,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job").field("name", &self.name).finish()
    }
}

impl Job {
    /// A job named `name` whose options are `A` (a `#[derive(clap::Args)]` struct; flatten
    /// [`ClusterArgs`] into it for `--executors`, `--scheduler` and the other cluster
    /// options) and whose body is `run`.
    pub fn new<A, F, Fut>(name: &'static str, about: &'static str, run: F) -> Self
    where
        A: clap::Args + Send + 'static,
        F: Fn(A, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let command = A::augment_args(clap::Command::new(name).about(about));
        let body: Body = Arc::new(move |matches, context| match A::from_arg_matches(matches) {
            Ok(args) => Box::pin(run(args, context)),
            Err(e) => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default().to_string();
                Box::pin(
                    async move { Err(anyhow::anyhow!("{}", first.trim_start_matches("error: "))) },
                )
            }
        });
        Self {
            name: name.to_string(),
            command,
            body,
        }
    }

    /// The name `ember run` knows the job by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job's subcommand of `ember run`: its name, about line and options.
    pub(super) fn command(&self) -> clap::Command {
        self.command.clone()
    }

    /// Runs the job with the options `matches` holds.
    pub(super) async fn run(
        &self,
        matches: &ArgMatches,
        context: JobContext,
    ) -> anyhow::Result<()> {
        (self.body)(matches, context).await
    }
}

/// What a running job gets from the command: the binary's functions, and the sessions
/// that plan with them.
#[derive(Clone)]
pub struct JobContext {
    functions: FunctionRegistry,
}

impl JobContext {
    pub(super) fn new(functions: FunctionRegistry) -> Self {
        Self { functions }
    }

    /// The functions of the binary that runs the command.
    pub fn functions(&self) -> &FunctionRegistry {
        &self.functions
    }

    /// A session as the cluster options say (the embedded cluster, or the process
    /// cluster of `--scheduler`) with the binary's functions, and a progress bar when
    /// stderr is a terminal (clear it with [`finish_progress`](super::finish_progress)
    /// before printing).
    pub async fn session(
        &self,
        cluster: &ClusterArgs,
    ) -> anyhow::Result<(Session, Option<Arc<ProgressBar>>)> {
        new_session(cluster, &self.functions).await
    }
}

/// The `run` subcommand with one subcommand per job.
pub(super) fn run_command(registry: &Registry) -> clap::Command {
    clap::Command::new("run")
        .about(format!(
            "Run a named pipeline on the embedded cluster, or on a process cluster with \
             --scheduler (jobs: {})",
            registry.job_names()
        ))
        .subcommand_required(true)
        .subcommand_value_name("JOB")
        // An unknown name reaches `run_job`, which names the known ones.
        .allow_external_subcommands(true)
        .subcommands(registry.jobs.iter().map(Job::command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Args)]
    struct Twice {
        #[arg(long)]
        n: u64,
    }

    fn twice() -> Job {
        Job::new("twice", "doubles", |args: Twice, _context| async move {
            anyhow::ensure!(args.n * 2 == 14, "got {}", args.n * 2);
            Ok(())
        })
    }

    #[tokio::test]
    async fn a_job_parses_its_own_options_and_a_name_is_taken_once() -> anyhow::Result<()> {
        let mut registry = Registry::new();
        registry.add_job(twice())?;
        let duplicate = registry.add_job(twice());
        assert!(
            matches!(&duplicate, Err(EmberError::Config { message, .. }) if message.contains("twice")),
            "{duplicate:?}"
        );
        let run = run_command(&registry);
        let matches = run.try_get_matches_from(["run", "twice", "--n", "7"])?;
        let Some((name, options)) = matches.subcommand() else {
            anyhow::bail!("no job chosen");
        };
        let job = registry
            .job(name)
            .ok_or_else(|| anyhow::anyhow!("no {name}"))?;
        let context = JobContext::new(registry.functions().clone());
        job.run(options, context.clone()).await?;
        let wrong = run_command(&registry).try_get_matches_from(["run", "twice", "--n", "x"]);
        assert!(wrong.is_err());
        Ok(())
    }
}
