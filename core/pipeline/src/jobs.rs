//! Jobs: sequences of idempotent, checkpointed steps stored in the configuration database.
//!
//! A step is marked running (its attempt counted) before it starts and done, with its
//! output, in the same transaction that records its effects' bookkeeping. After a crash,
//! a job whose state is still `running` resumes at its first step that is not done: a
//! finished step never runs again, and the interrupted one runs again from its start,
//! which is why every step must be idempotent.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{
    error::PipelineError,
    store::{Store, now_ms},
};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Protect a group forward (first time or after commit).
    Protect,
    /// Fail over to Azure (planned, unplanned or test).
    Failover,
    /// Discard a test failover.
    TestCleanup,
    /// Reprotect the failed-over VMs back to on-premises.
    Reprotect,
    /// Fail back: the failover from Azure to on-premises.
    Failback,
    /// Commit a failback: delete the Azure VMs.
    Commit,
}

impl JobKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Protect => "protect",
            JobKind::Failover => "failover",
            JobKind::TestCleanup => "test-cleanup",
            JobKind::Reprotect => "reprotect",
            JobKind::Failback => "failback",
            JobKind::Commit => "commit",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [JobKind::Protect, JobKind::Failover, JobKind::TestCleanup, JobKind::Reprotect, JobKind::Failback, JobKind::Commit]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: u64,
    /// What it does.
    pub kind: JobKind,
    /// The group (or plan's group) it acts on.
    pub target: String,
    /// Its parameters (JSON).
    pub params: serde_json::Value,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// When it was created.
    pub created_ms: u64,
    /// When it finished.
    pub finished_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Payload bytes sent over the data path.
    pub bytes_sent: u64,
    /// Changed bytes read from the source.
    pub bytes_changed: u64,
    /// Its steps.
    pub steps: Vec<Step>,
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Position.
    pub idx: u32,
    /// Name.
    pub name: String,
    /// `pending`, `running`, `done` or `failed`.
    pub state: String,
    /// How many times it started (more than one means it was resumed or retried).
    pub attempts: u32,
    /// When it last started.
    pub started_ms: Option<u64>,
    /// When it finished.
    pub finished_ms: Option<u64>,
    /// What it produced (JSON).
    pub output: Option<serde_json::Value>,
}

impl Job {
    /// Duration in ms from creation to finish (or now).
    pub fn elapsed_ms(&self) -> u64 {
        self.finished_ms.unwrap_or_else(now_ms).saturating_sub(self.created_ms)
    }

    /// The first step not yet done.
    pub fn next_step(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.state != "done")
    }
}

impl Store {
    /// Creates a job with its steps, all pending.
    pub fn create_job(&self, kind: JobKind, target: &str, params: &serde_json::Value, steps: &[&str]) -> Result<u64, PipelineError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.err())?;
        tx.execute(
            "INSERT INTO jobs(kind, target, params, state, created_ms) VALUES (?1, ?2, ?3, 'running', ?4)",
            params![kind.as_str(), target, params.to_string(), now_ms() as i64],
        )
        .map_err(self.err())?;
        let id = tx.last_insert_rowid() as u64;
        for (i, name) in steps.iter().enumerate() {
            tx.execute("INSERT INTO steps(job, idx, name, state) VALUES (?1, ?2, ?3, 'pending')", params![id as i64, i as i64, name]).map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        Ok(id)
    }

    /// A job with its steps.
    pub fn job(&self, id: u64) -> Result<Option<Job>, PipelineError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, kind, target, params, state, created_ms, finished_ms, error, bytes_sent, bytes_changed FROM jobs WHERE id = ?1",
                [id as i64],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)? as u64,
                        r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, i64>(8)? as u64,
                        r.get::<_, i64>(9)? as u64,
                    ))
                },
            )
            .optional()
            .map_err(self.err())?;
        let Some((id, kind, target, params, state, created_ms, finished_ms, error, bytes_sent, bytes_changed)) = row else { return Ok(None) };
        let mut stmt = conn
            .prepare("SELECT idx, name, state, attempts, started_ms, finished_ms, output FROM steps WHERE job = ?1 ORDER BY idx")
            .map_err(self.err())?;
        let steps = stmt
            .query_map([id as i64], |r| {
                Ok(Step {
                    idx: r.get::<_, i64>(0)? as u32,
                    name: r.get(1)?,
                    state: r.get(2)?,
                    attempts: r.get::<_, i64>(3)? as u32,
                    started_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    finished_ms: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                    output: r.get::<_, Option<String>>(6)?.and_then(|s| serde_json::from_str(&s).ok()),
                })
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        let kind = JobKind::parse(&kind).ok_or_else(|| PipelineError::Database {
            path: self.path().to_path_buf(),
            message: format!("job {id} has unknown kind `{kind}`; it was written by another Homeward version"),
        })?;
        Ok(Some(Job {
            id,
            kind,
            target,
            params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
            state,
            created_ms,
            finished_ms,
            error,
            bytes_sent,
            bytes_changed,
            steps,
        }))
    }

    /// Job ids, newest last; `only_running` keeps those a crash interrupted.
    pub fn job_ids(&self, only_running: bool) -> Result<Vec<u64>, PipelineError> {
        let conn = self.conn();
        let sql = if only_running { "SELECT id FROM jobs WHERE state = 'running' ORDER BY id" } else { "SELECT id FROM jobs ORDER BY id" };
        let mut stmt = conn.prepare(sql).map_err(self.err())?;
        let ids = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(self.err())?.collect::<Result<Vec<_>, _>>().map_err(self.err())?;
        Ok(ids.into_iter().map(|i| i as u64).collect())
    }

    /// Marks a step running and counts the attempt.
    pub fn start_step(&self, job: u64, idx: u32) -> Result<(), PipelineError> {
        self.conn()
            .execute(
                "UPDATE steps SET state = 'running', attempts = attempts + 1, started_ms = ?3 WHERE job = ?1 AND idx = ?2",
                params![job as i64, idx as i64, now_ms() as i64],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Marks a step done with its output and adds the bytes it moved to the job.
    pub fn finish_step(&self, job: u64, idx: u32, output: &serde_json::Value, bytes_sent: u64, bytes_changed: u64) -> Result<(), PipelineError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.err())?;
        tx.execute(
            "UPDATE steps SET state = 'done', finished_ms = ?3, output = ?4 WHERE job = ?1 AND idx = ?2",
            params![job as i64, idx as i64, now_ms() as i64, output.to_string()],
        )
        .map_err(self.err())?;
        tx.execute(
            "UPDATE jobs SET bytes_sent = bytes_sent + ?2, bytes_changed = bytes_changed + ?3 WHERE id = ?1",
            params![job as i64, bytes_sent as i64, bytes_changed as i64],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    /// Marks a step failed.
    pub fn fail_step(&self, job: u64, idx: u32) -> Result<(), PipelineError> {
        self.conn().execute("UPDATE steps SET state = 'failed' WHERE job = ?1 AND idx = ?2", params![job as i64, idx as i64]).map_err(self.err())?;
        Ok(())
    }

    /// Ends a job.
    pub fn finish_job(&self, job: u64, error: Option<&str>) -> Result<(), PipelineError> {
        self.conn()
            .execute(
                "UPDATE jobs SET state = ?2, finished_ms = ?3, error = ?4 WHERE id = ?1",
                params![job as i64, if error.is_some() { "failed" } else { "succeeded" }, now_ms() as i64, error],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Makes a failed job runnable again from its failed step.
    pub fn reopen_job(&self, job: u64) -> Result<(), PipelineError> {
        let conn = self.conn();
        conn.execute("UPDATE jobs SET state = 'running', finished_ms = NULL, error = NULL WHERE id = ?1", [job as i64]).map_err(self.err())?;
        conn.execute("UPDATE steps SET state = 'pending' WHERE job = ?1 AND state = 'failed'", [job as i64]).map_err(self.err())?;
        Ok(())
    }
}

/// Where in a step a crash hook fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPhase {
    /// The step is recorded running and has done nothing yet.
    Start,
    /// Part of the step's work is done (the step calls this where that is true).
    Mid,
    /// The step is recorded done.
    After,
}

/// A deliberate crash for the crash-resume tests: `HOMEWARD_CRASH_AT=<step>[:start|:mid|:after]`
/// makes the process kill itself with SIGKILL at that point, as `kill -9` would.
pub(crate) fn crash_point(step: &str, phase: CrashPhase) {
    let Ok(spec) = std::env::var("HOMEWARD_CRASH_AT") else { return };
    let (name, wanted) = match spec.split_once(':') {
        Some((n, "mid")) => (n.to_string(), CrashPhase::Mid),
        Some((n, "after")) => (n.to_string(), CrashPhase::After),
        Some((n, _)) => (n.to_string(), CrashPhase::Start),
        None => (spec.clone(), CrashPhase::Start),
    };
    if name == step && wanted == phase {
        eprintln!("HOMEWARD_CRASH_AT={spec}: killing this process ({phase:?} of step {step})");
        // SAFETY: raising a signal on ourselves has no memory-safety preconditions.
        unsafe { libc_kill_self() };
    }
}

unsafe fn libc_kill_self() {
    unsafe extern "C" {
        fn getpid() -> i32;
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: plain libc calls.
    unsafe {
        kill(getpid(), 9);
    }
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_record_attempts_and_a_failed_job_reopens_at_its_failed_step() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let id = s.create_job(JobKind::Commit, "app", &serde_json::json!({}), &["a", "b", "c"]).unwrap();
        s.start_step(id, 0).unwrap();
        s.finish_step(id, 0, &serde_json::json!({"x": 1}), 10, 20).unwrap();
        s.start_step(id, 1).unwrap();
        s.fail_step(id, 1).unwrap();
        s.finish_job(id, Some("boom")).unwrap();
        let j = s.job(id).unwrap().unwrap();
        assert_eq!((j.state.as_str(), j.bytes_sent, j.bytes_changed), ("failed", 10, 20));
        assert_eq!(j.next_step().unwrap().name, "b");
        assert!(s.job_ids(true).unwrap().is_empty());
        s.reopen_job(id).unwrap();
        let j = s.job(id).unwrap().unwrap();
        assert_eq!(j.state, "running");
        assert_eq!((j.steps[1].state.as_str(), j.steps[1].attempts), ("pending", 1));
        assert_eq!(s.job_ids(true).unwrap(), vec![id]);
    }
}
