//! vim25 Tasks: long operations return a Task at once and run in the background, and the
//! client polls `info` through the property collector, as with real vCenter and ESXi.

use std::sync::Arc;

use super::Site;
use super::faults::Fault;
use super::inventory::Inventory;
use super::soap::{Data, MoRef, Value, now};

/// The operation a task runs against the inventory when it gets its turn.
pub type TaskOp = Box<dyn FnOnce(&mut Inventory) -> Result<Option<Value>, Fault> + Send>;

/// Where the lab holds new tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskGate {
    /// Tasks run as soon as they are submitted.
    Open,
    /// Tasks stay `queued`.
    HoldQueued,
    /// Tasks start (`running`) but do not finish.
    HoldRunning,
}

/// `TaskInfoState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting to run.
    Queued,
    /// Running.
    Running,
    /// Finished successfully.
    Success,
    /// Finished with a fault.
    Error,
}

impl TaskState {
    /// vim25 enum value.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Error => "error",
        }
    }
}

/// A task and its `TaskInfo`.
#[derive(Debug, Clone)]
pub struct Task {
    /// `task-N` / `haTask-...`.
    pub moref: MoRef,
    /// Method name, e.g. `PowerOnVM_Task`.
    pub name: String,
    /// `descriptionId`, e.g. `VirtualMachine.powerOn`.
    pub description_id: String,
    /// Entity operated on.
    pub entity: MoRef,
    /// Its name at submission.
    pub entity_name: String,
    /// State.
    pub state: TaskState,
    /// Result on success.
    pub result: Option<Value>,
    /// Fault on error.
    pub error: Option<Fault>,
    /// User who started it.
    pub user: String,
    /// Queue time.
    pub queue_time: String,
    /// Start time.
    pub start_time: Option<String>,
    /// Completion time.
    pub complete_time: Option<String>,
    /// Event chain id.
    pub event_chain_id: i32,
}

impl Task {
    /// Whether the task still holds its entity.
    pub fn active(&self) -> bool {
        matches!(self.state, TaskState::Queued | TaskState::Running)
    }

    /// The `TaskInfo` data object.
    pub fn info(&self) -> Value {
        Data::new("TaskInfo")
            .with("key", self.moref.value.as_str())
            .with("task", &self.moref)
            .with("name", self.name.as_str())
            .with("descriptionId", self.description_id.as_str())
            .with("entity", &self.entity)
            .with("entityName", self.entity_name.as_str())
            .with(
                "state",
                Value::Enum("TaskInfoState", self.state.as_str().into()),
            )
            .with("cancelled", false)
            .with("cancelable", false)
            .with_opt("error", self.error.as_ref().map(Fault::localized))
            .with_opt(
                "result",
                self.result.clone().map(|r| Value::Any(Box::new(r))),
            )
            .with_opt(
                "progress",
                (self.state == TaskState::Running).then_some(Value::Int(0)),
            )
            .with(
                "reason",
                Data::new("TaskReasonUser").with("userName", self.user.as_str()),
            )
            .with("queueTime", Value::DateTime(self.queue_time.clone()))
            .with_opt("startTime", self.start_time.clone().map(Value::DateTime))
            .with_opt(
                "completeTime",
                self.complete_time.clone().map(Value::DateTime),
            )
            .with("eventChainId", Value::Int(self.event_chain_id))
            .into()
    }
}

/// The injection key under which faults for tasks of `method` are kept.
pub fn task_key(method: &str) -> String {
    format!("task:{method}")
}

/// What a new task is about.
pub struct NewTask<'a> {
    /// Entity operated on (the VM, or the folder for CreateVM_Task).
    pub entity: MoRef,
    /// The entity's name, for `entityName`.
    pub entity_name: String,
    /// Method name, e.g. `PowerOnVM_Task`.
    pub method: &'a str,
    /// `descriptionId`, e.g. `VirtualMachine.powerOn`.
    pub description_id: &'a str,
    /// User starting it.
    pub user: &'a str,
}

/// Queues `op` as a task and returns the task reference at once.
///
/// Fails with TaskInProgress when another task still holds the entity, because vSphere
/// serialises conflicting operations on one VM.
pub fn submit(
    site: &Arc<Site>,
    inv: &mut Inventory,
    new: NewTask<'_>,
    op: TaskOp,
) -> Result<MoRef, Fault> {
    let NewTask {
        entity,
        entity_name,
        method,
        description_id,
        user,
    } = new;
    if entity.ty != "Folder"
        && let Some(busy) = inv
            .tasks
            .values()
            .find(|t| t.entity == entity && t.active())
    {
        return Err(Fault::task_in_progress(&busy.moref));
    }
    let n = inv.next();
    let id = match inv.mode {
        super::Mode::Vcenter => format!("task-{n}"),
        super::Mode::Esxi => format!("haTask-{}-vim.{description_id}-{n}", entity.value),
    };
    let moref = MoRef::new("Task", id.clone());
    inv.tasks.insert(
        id.clone(),
        Task {
            moref: moref.clone(),
            name: method.to_string(),
            description_id: description_id.to_string(),
            entity,
            entity_name,
            state: TaskState::Queued,
            result: None,
            error: None,
            user: user.to_string(),
            queue_time: now(),
            start_time: None,
            complete_time: None,
            event_chain_id: n as i32,
        },
    );
    inv.task_order.push(id.clone());
    let site = Arc::clone(site);
    let method = method.to_string();
    tokio::spawn(async move {
        // The lab can hold tasks queued or running, so tests observe each TaskInfo state and
        // TaskInProgress deterministically.
        let mut gate = site.task_gate.subscribe();
        let _ = gate.wait_for(|g| *g != TaskGate::HoldQueued).await;
        {
            let mut inv = site.lock();
            if let Some(t) = inv.tasks.get_mut(&id) {
                t.state = TaskState::Running;
                t.start_time = Some(now());
            }
        }
        let _ = gate.wait_for(|g| *g == TaskGate::Open).await;
        let duration = *site.task_duration.lock().unwrap_or_else(|e| e.into_inner());
        if duration.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(duration).await;
        }
        let injected = site
            .injections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_fault(&task_key(&method));
        let mut inv = site.lock();
        let outcome = match injected {
            Some(fault) => Err(fault),
            None => op(&mut inv),
        };
        if let Some(t) = inv.tasks.get_mut(&id) {
            t.complete_time = Some(now());
            match outcome {
                Ok(result) => {
                    t.state = TaskState::Success;
                    t.result = result;
                }
                Err(fault) => {
                    tracing::info!(task = %id, fault = %fault, "task failed");
                    t.state = TaskState::Error;
                    t.error = Some(fault);
                }
            }
        }
    });
    Ok(moref)
}
