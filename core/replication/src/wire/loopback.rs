//! Both roles in one process: the master target serves one session on a loopback port,
//! so a single-machine deployment still sends every cycle through the framed protocol
//! (checksummed frames, window, acknowledgements) and not around it.

use std::net::SocketAddr;

use tokio::{net::TcpListener, task::JoinHandle};

use super::{MasterTargetServer, ProcessServerSession, SessionOptions};
use crate::{
    cycle::MasterTarget,
    error::{ReplicationError, WireError},
};

/// A master target serving one session on `127.0.0.1` on an ephemeral port.
#[derive(Debug)]
pub struct LoopbackMasterTarget {
    addr: SocketAddr,
    task: JoinHandle<(MasterTargetServer, Result<(), ReplicationError>)>,
}

impl LoopbackMasterTarget {
    /// Binds the port and starts serving `target`; the session begins when
    /// [`LoopbackMasterTarget::connect`] is called.
    pub async fn start(target: MasterTarget) -> Result<Self, WireError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|source| WireError::Io { peer: "127.0.0.1:0".into(), source })?;
        let addr = listener.local_addr().map_err(|source| WireError::Io { peer: "loopback listener".into(), source })?;
        let mut server = MasterTargetServer::for_target(target);
        let task = tokio::spawn(async move {
            let result = match listener.accept().await {
                Ok((stream, _)) => server.session(stream).await,
                Err(source) => Err(WireError::Io { peer: addr.to_string(), source }.into()),
            };
            (server, result)
        });
        Ok(Self { addr, task })
    }

    /// Opens the process server's session to this master target.
    pub async fn connect(&self, group: &str, disks: &[(u32, u64)], options: SessionOptions) -> Result<ProcessServerSession, WireError> {
        ProcessServerSession::connect(&self.addr.to_string(), group, disks, options).await
    }

    /// Waits for the session to end (close or drop the client first) and gives the
    /// master target back. A session that ended with an error still returns the target
    /// when it had been opened, since its journal has already cut the failed cycle.
    pub async fn finish(mut self) -> Result<MasterTarget, ReplicationError> {
        let (server, result) = (&mut self.task).await.map_err(|e| WireError::Remote { peer: self.addr.to_string(), message: format!("master target task failed: {e}") })?;
        result?;
        server.into_target().ok_or_else(|| WireError::Remote { peer: self.addr.to_string(), message: "the session ended before opening the master target".into() }.into())
    }
}

impl Drop for LoopbackMasterTarget {
    fn drop(&mut self) {
        // Never leave the port open: a listener whose session never came is stopped.
        self.task.abort();
    }
}
