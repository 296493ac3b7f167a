//! The vim25 SOAP client: service content, login, the session cookie and calls.
//!
//! The session cookie and key are kept in the adapter's key-value store, so an instance the
//! host discards and re-creates (after a timeout, say) reuses the session instead of
//! logging in again; a `NotAuthenticated` answer (an expired session) logs in once more
//! and repeats the call.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::faults;
use crate::error;
use crate::host;
use crate::http::Request;
use crate::soap::{self, Element, MoRef, Node, Outcome, SoapFault};
use crate::types::AdapterError;

/// The vim25 namespace.
pub const VIM25: &str = "urn:vim25";
/// The session cookie's name, shared by `/sdk` and `/folder`.
pub const COOKIE_NAME: &str = "vmware_soap_session";
const KV_SESSION: &str = "vsphere/session";

/// Why a call failed: a fault the caller may want to inspect, or anything else.
#[derive(Debug, Clone)]
pub enum CallFailure {
    /// The server answered with a vim25 fault (boxed: faults carry their detail tree).
    Fault(Box<SoapFault>),
    /// The call got no usable answer (transport, HTTP status, unparsable body).
    Other(AdapterError),
}

impl CallFailure {
    /// The fault's type name, if the server sent one.
    pub fn fault_kind(&self) -> Option<&str> {
        match self {
            CallFailure::Fault(f) => Some(f.kind.as_str()),
            CallFailure::Other(_) => None,
        }
    }

    /// Converts to the contract's error, naming what was being done.
    pub fn into_error(self, what: &str) -> AdapterError {
        match self {
            CallFailure::Fault(f) => faults::to_error(&f, what),
            CallFailure::Other(e) => e,
        }
    }
}

/// The managers `RetrieveServiceContent` names, and the `about` facts.
#[derive(Debug, Clone)]
pub struct ServiceContent {
    /// The inventory's root folder.
    pub root_folder: MoRef,
    /// The PropertyCollector.
    pub property_collector: MoRef,
    /// The ViewManager (ContainerViews).
    pub view_manager: MoRef,
    /// The SessionManager (Login).
    pub session_manager: MoRef,
    /// The AuthorizationManager (HasPrivilegeOnEntities), where the site has one.
    pub authorization_manager: Option<MoRef>,
    /// The LicenseManager, where the site has one.
    pub license_manager: Option<MoRef>,
    /// `about.name`, such as `VMware vCenter Server`.
    pub product: String,
    /// `about.fullName`.
    pub full_name: String,
    /// `about.version`.
    pub version: String,
    /// `about.apiType`: `VirtualCenter` or `HostAgent`.
    pub api_type: String,
    /// `about.apiVersion`.
    pub api_version: String,
}

impl ServiceContent {
    fn parse(rv: &Element) -> Result<Self, AdapterError> {
        let moref = |name: &str| rv.child(name).and_then(Element::as_moref);
        let need = |name: &str| moref(name).ok_or_else(|| error::internal(format!("the service content has no `{name}`")));
        let about = rv.child("about").cloned().unwrap_or_default();
        let text = |n: &str| about.child_text(n).unwrap_or_default().to_string();
        Ok(ServiceContent {
            root_folder: need("rootFolder")?,
            property_collector: need("propertyCollector")?,
            view_manager: need("viewManager")?,
            session_manager: need("sessionManager")?,
            authorization_manager: moref("authorizationManager"),
            license_manager: moref("licenseManager"),
            product: text("name"),
            full_name: text("fullName"),
            version: text("version"),
            api_type: text("apiType"),
            api_version: text("apiVersion"),
        })
    }
}

/// A logged-in session as kept in the key-value store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StoredSession {
    endpoint: String,
    user: String,
    /// `vmware_soap_session="…"`, as sent back in the `Cookie` header.
    cookie: String,
    /// `UserSession.key`, which `HasPrivilegeOnEntities` wants.
    key: String,
}

/// Where the site is and who logs in, from the plugin's config and secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` or `http`.
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    /// The `username` config key.
    pub user: String,
}

impl Endpoint {
    /// Reads `endpoint`, `username` and `scheme` from the config.
    pub fn from_config() -> Result<Self, AdapterError> {
        let authority = host::require("endpoint")?;
        let user = host::require("username")?;
        let scheme = host::config_or("scheme", "https");
        if scheme != "https" && scheme != "http" {
            return Err(error::invalid(format!("config key `scheme` is `{scheme}`; use `https` or `http`")));
        }
        if authority.contains('/') {
            return Err(error::invalid(format!("config key `endpoint` is `{authority}`; give host[:port] only, such as `vcenter.example.com`")));
        }
        Ok(Endpoint { scheme, authority, user })
    }

    /// `scheme://host[:port]`, the base of `/sdk` and `/folder`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// A vim25 client bound to one endpoint and session.
pub struct Client {
    endpoint: Endpoint,
    content: ServiceContent,
    session: RefCell<Option<StoredSession>>,
}

thread_local! {
    static CLIENT: RefCell<Option<Rc<Client>>> = const { RefCell::new(None) };
}

impl Client {
    /// The instance's client, created (service content read, session restored from the
    /// key-value store or logged in) on first use.
    pub fn get() -> Result<Rc<Client>, AdapterError> {
        let endpoint = Endpoint::from_config()?;
        if let Some(c) = CLIENT.with(|c| c.borrow().clone())
            && c.endpoint == endpoint
        {
            return Ok(c);
        }
        let content = Self::service_content(&endpoint)?;
        let stored = host::kv_get(KV_SESSION)
            .and_then(|b| serde_json::from_slice::<StoredSession>(&b).ok())
            .filter(|s| s.endpoint == endpoint.base_url() && s.user == endpoint.user);
        let client = Rc::new(Client { endpoint, content, session: RefCell::new(stored) });
        if client.session.borrow().is_none() {
            client.login()?;
        }
        CLIENT.with(|c| *c.borrow_mut() = Some(client.clone()));
        Ok(client)
    }

    /// The service content read at connect time.
    pub fn content(&self) -> &ServiceContent {
        &self.content
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The `Cookie` header value of the session (`vmware_soap_session="…"`).
    pub fn cookie(&self) -> Result<String, AdapterError> {
        self.session.borrow().as_ref().map(|s| s.cookie.clone()).ok_or_else(|| error::internal("no vSphere session"))
    }

    /// The session's `UserSession.key`.
    pub fn session_key(&self) -> Result<String, AdapterError> {
        self.session.borrow().as_ref().map(|s| s.key.clone()).ok_or_else(|| error::internal("no vSphere session"))
    }

    fn sdk_url(endpoint: &Endpoint) -> String {
        format!("{}/sdk", endpoint.base_url())
    }

    fn service_content(endpoint: &Endpoint) -> Result<ServiceContent, AdapterError> {
        let this = MoRef::new("ServiceInstance", "ServiceInstance");
        let (resp, _) = post(endpoint, None, "urn:vim25", "RetrieveServiceContent", &this, &[])
            .map_err(|f| f.into_error(&format!("reading the service content of {}", endpoint.base_url())))?;
        let rv = resp.child("returnval").ok_or_else(|| error::internal("RetrieveServiceContent returned nothing"))?;
        ServiceContent::parse(rv)
    }

    /// Logs in with `username` and the `password` secret and stores the session.
    pub fn login(&self) -> Result<(), AdapterError> {
        let password = match host::secret("password") {
            Ok(p) => p,
            Err(AdapterError::NotFound(m)) => {
                return Err(error::invalid(format!("the secret `password` is not configured: add it to this plugin's [plugins.NAME.secrets] section ({m})")));
            }
            Err(e) => return Err(e),
        };
        let args = [Node::text("userName", self.endpoint.user.clone()), Node::text("password", password)];
        let what = format!("logging in to {} as `{}`", self.endpoint.base_url(), self.endpoint.user);
        let (resp, headers) =
            post(&self.endpoint, None, &self.soap_action(), "Login", &self.content.session_manager, &args).map_err(|f| f.into_error(&what))?;
        let cookie = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next())
            .find(|kv| kv.trim().starts_with(&format!("{COOKIE_NAME}=")))
            .map(|kv| kv.trim().to_string())
            .ok_or_else(|| error::internal(format!("{what}: the server set no {COOKIE_NAME} cookie")))?;
        let key = resp.path(&["returnval", "key"]).map(|k| k.text.trim().to_string()).unwrap_or_default();
        let stored = StoredSession { endpoint: self.endpoint.base_url(), user: self.endpoint.user.clone(), cookie, key };
        if let Ok(bytes) = serde_json::to_vec(&stored) {
            // A session that cannot be persisted still serves this instance.
            if let Err(e) = host::kv_set(KV_SESSION, &bytes) {
                host::warn(&format!("cannot keep the vSphere session in the key-value store: {e:?}"));
            }
        }
        *self.session.borrow_mut() = Some(stored);
        Ok(())
    }

    fn soap_action(&self) -> String {
        if self.content.api_version.is_empty() { VIM25.to_string() } else { format!("{VIM25}/{}", self.content.api_version) }
    }

    /// Calls `method` on `this`; logs in again once if the session has expired.
    pub fn call(&self, method: &str, this: &MoRef, args: &[Node]) -> Result<Element, CallFailure> {
        let cookie = self.cookie().map_err(CallFailure::Other)?;
        match post(&self.endpoint, Some(&cookie), &self.soap_action(), method, this, args) {
            Err(CallFailure::Fault(f)) if f.kind == "NotAuthenticated" => {
                host::debug("vSphere session expired; logging in again");
                self.login().map_err(CallFailure::Other)?;
                let cookie = self.cookie().map_err(CallFailure::Other)?;
                post(&self.endpoint, Some(&cookie), &self.soap_action(), method, this, args).map(|(r, _)| r)
            }
            other => other.map(|(r, _)| r),
        }
    }

    /// Calls `method` and maps any failure to the contract's error, naming `what`.
    pub fn invoke(&self, method: &str, this: &MoRef, args: &[Node], what: &str) -> Result<Element, AdapterError> {
        self.call(method, this, args).map_err(|f| f.into_error(what))
    }
}

fn post(
    endpoint: &Endpoint,
    cookie: Option<&str>,
    soap_action: &str,
    method: &str,
    this: &MoRef,
    args: &[Node],
) -> Result<(Element, Vec<(String, String)>), CallFailure> {
    let url = Client::sdk_url(endpoint);
    let mut req = Request::new("POST", url.clone())
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", soap_action)
        .body(soap::envelope(VIM25, method, this, args));
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let resp = req.send().map_err(|e| CallFailure::Other(e.into()))?;
    match soap::parse_response(&resp.body) {
        Ok(Outcome::Fault(f)) => Err(CallFailure::Fault(Box::new(f))),
        Ok(Outcome::Response(r)) if resp.status == 200 => Ok((r, resp.headers)),
        parsed => {
            let status = resp.status;
            let detail = match parsed {
                Err(e) => e.to_string(),
                Ok(_) => "a SOAP answer with a non-200 status".into(),
            };
            let msg = format!("{method} at {url}: HTTP {status}: {detail}");
            Err(CallFailure::Other(match status {
                500..=599 | 429 => error::unavailable(msg, resp.retry_after_ms()),
                401 | 403 => error::denied(msg),
                _ => error::internal(msg),
            }))
        }
    }
}
