//! The data of one adapter instance's store, and the host imports it serves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::bindings::homeward::adapter::{config, kv, logging, types};
use crate::bindings::types::{AdapterError, Unavailable};
use crate::kv::KvStore;
use crate::limits::MemoryLimiter;
use crate::outbound::{Denial, OutboundPolicy, Target};

/// What every instance of one plugin shares: its name, config, secrets and store.
#[derive(Debug)]
pub(crate) struct PluginShared {
    pub(crate) name: String,
    pub(crate) config: BTreeMap<String, String>,
    /// Secret name → host environment variable.
    pub(crate) secrets: BTreeMap<String, String>,
    pub(crate) kv: KvStore,
}

/// Enforces the outbound policy on every request and records what it refused.
pub(crate) struct SandboxHooks {
    pub(crate) policy: Arc<OutboundPolicy>,
    pub(crate) denials: Vec<Denial>,
}

impl WasiHttpHooks for SandboxHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        let verdict = match Target::from_uri(request.uri()) {
            Some(target) => self.policy.check(&target),
            None => Err(Denial::NoHost { uri: request.uri().to_string() }),
        };
        if let Err(denial) = verdict {
            tracing::warn!(plugin = %self.policy.plugin, %denial, "outbound request denied");
            self.denials.push(denial);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// The `T` of `Store<T>` for adapter instances.
pub(crate) struct AdapterState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: SandboxHooks,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) shared: Arc<PluginShared>,
    /// When the current call must stop; checked at every epoch tick.
    pub(crate) deadline: Option<Instant>,
    /// Host-call counter for the current call (reported by the test kit).
    pub(crate) host_calls: u64,
}

impl WasiView for AdapterState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for AdapterState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

impl types::Host for AdapterState {}

impl logging::Host for AdapterState {
    fn log(&mut self, level: logging::Level, message: String) {
        self.host_calls += 1;
        let plugin = self.shared.name.as_str();
        match level {
            logging::Level::Trace => tracing::trace!(target: "adapter", plugin, "{message}"),
            logging::Level::Debug => tracing::debug!(target: "adapter", plugin, "{message}"),
            logging::Level::Info => tracing::info!(target: "adapter", plugin, "{message}"),
            logging::Level::Warn => tracing::warn!(target: "adapter", plugin, "{message}"),
            logging::Level::Error => tracing::error!(target: "adapter", plugin, "{message}"),
        }
    }
}

impl config::Host for AdapterState {
    fn get(&mut self, key: String) -> Option<String> {
        self.host_calls += 1;
        self.shared.config.get(&key).cloned()
    }

    fn keys(&mut self) -> Vec<String> {
        self.host_calls += 1;
        self.shared.config.keys().cloned().collect()
    }

    fn secret(&mut self, name: String) -> Result<String, AdapterError> {
        self.host_calls += 1;
        let plugin = &self.shared.name;
        let Some(var) = self.shared.secrets.get(&name) else {
            return Err(AdapterError::NotFound(format!(
                "secret `{name}` is not declared; add `{name} = \"ENV_VAR_NAME\"` to [plugins.{plugin}.secrets]"
            )));
        };
        std::env::var(var).map_err(|_| {
            AdapterError::PermissionDenied(format!(
                "secret `{name}` of plugin `{plugin}` comes from environment variable {var}, which is not set; export it before starting homeward"
            ))
        })
    }
}

impl kv::Host for AdapterState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.host_calls += 1;
        self.shared.kv.get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), AdapterError> {
        self.host_calls += 1;
        self.shared.kv.set(&key, &value).map_err(kv_error)
    }

    fn delete(&mut self, key: String) -> Result<(), AdapterError> {
        self.host_calls += 1;
        self.shared.kv.delete(&key).map_err(kv_error)
    }

    fn keys(&mut self, prefix: String) -> Vec<String> {
        self.host_calls += 1;
        self.shared.kv.keys(&prefix)
    }
}

fn kv_error(e: crate::kv::KvError) -> AdapterError {
    match e {
        crate::kv::KvError::Io { .. } => AdapterError::Unavailable(Unavailable { message: e.to_string(), retry_after_ms: None }),
        other => AdapterError::InvalidArgument(other.to_string()),
    }
}
