//! Classic Service Management (`/{subscription-id}/services/...`): hosted services,
//! deployments and persistent VM roles, role operations, virtual network sites and
//! asynchronous operation status, behind the management-certificate stand-in.

pub mod auth;
mod xml;

use super::Shared;
use super::blob::store::{BlobRef, PAGE};
use super::faults::take_operation_failure;
use super::http::{Req, iso8601, respond, unix_now};
use super::lro::{self, Effect, Operation, Scope};
use super::state::{CLASSIC_CONTAINER, ClassicDisk, ClassicPower, CloudService, Deployment, Role, State};
use super::{Service, http::decode};
use axum::http::{Method, StatusCode};
use axum::response::Response;

const GIB: u64 = 1 << 30;
const FORBIDDEN: &str = "The server failed to authenticate the request. Verify that the certificate is valid and is associated with this subscription.";

/// A classic error: status, code, message.
struct Fail(StatusCode, &'static str, String);

fn fail(status: u16, code: &'static str, message: impl Into<String>) -> Fail {
    Fail(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), code, message.into())
}

/// `<Error><Code/><Message/></Error>` with the given status.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str, headers: &[(&str, String)]) -> Response {
    let mut h: Vec<(&str, String)> = headers.to_vec();
    h.push(("content-type", "application/xml; charset=utf-8".into()));
    respond(status, &h, xml::error(code, message))
}

/// Handles one Service Management request.
pub(crate) fn handle(shared: &Shared, req: &Req) -> Response {
    let rid = ("x-ms-request-id", req.request_id.clone());
    match route(shared, req) {
        Ok(r) => r,
        Err(Fail(status, code, message)) => error_response(status, code, &message, &[rid]),
    }
}

fn ok_xml(req: &Req, status: u16, body: String) -> Response {
    respond(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        &[("x-ms-request-id", req.request_id.clone()), ("content-type", "application/xml; charset=utf-8".into())],
        body,
    )
}

fn authenticate(shared: &Shared, req: &Req) -> Result<(), Fail> {
    let cert = &shared.config.management_certificate;
    let forbidden = || fail(403, "ForbiddenError", FORBIDDEN);
    let thumb = req.header(auth::THUMBPRINT_HEADER).ok_or_else(forbidden)?;
    let proof = req.header(auth::SIGNATURE_HEADER).ok_or_else(forbidden)?;
    if !thumb.eq_ignore_ascii_case(&cert.thumbprint) {
        return Err(forbidden());
    }
    let expected = cert.sign(req.method.as_str(), &req.raw_path, &req.raw_query, req.header("x-ms-version").unwrap_or(""), &req.body);
    if !auth::same(proof, &expected) {
        return Err(forbidden());
    }
    Ok(())
}

fn route(shared: &Shared, req: &Req) -> Result<Response, Fail> {
    authenticate(shared, req)?;
    if !req.header("x-ms-version").is_some_and(known_version) {
        return Err(fail(400, "MissingOrIncorrectVersionHeader", "The versioning header is not specified or was specified incorrectly."));
    }
    let lc: Vec<String> = req.segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let s = |i: usize| lc.get(i).map(String::as_str).unwrap_or("");
    let mut st = shared.lock();
    lro::settle(&mut st, &shared.config.lro);
    let Some(sub) = req.segments.first().and_then(|id| st.sub(id)).map(|s| s.id.clone()) else {
        return Err(fail(403, "ForbiddenError", FORBIDDEN));
    };
    let seg = |i: usize| req.segments[i].clone();
    let m = req.method.clone();
    match (lc.len(), s(1), s(2), s(3)) {
        (3, "operations", _, _) if m == Method::GET => operation_status(shared, req, &mut st, &seg(2)),
        (4, "services", "networking", "virtualnetwork") if m == Method::GET => {
            let c = &st.sub(&sub).expect("checked").classic;
            Ok(ok_xml(req, 200, xml::vnets(&c.vnets.values().collect::<Vec<_>>())))
        }
        (3, "services", "hostedservices", _) => match m {
            Method::GET => {
                let c = &st.sub(&sub).expect("checked").classic;
                Ok(ok_xml(req, 200, xml::hosted_services(&shared.endpoints.classic, &sub, &c.services.values().collect::<Vec<_>>())))
            }
            Method::POST => create_hosted_service(req, &mut st, &sub),
            _ => Err(not_allowed()),
        },
        (4, "services", "hostedservices", _) => {
            let name = seg(3);
            match m {
                Method::GET => {
                    let svc = service(&st, &sub, &name)?;
                    let embed = req.q("embed-detail").is_some_and(|v| v.eq_ignore_ascii_case("true"));
                    Ok(ok_xml(req, 200, xml::hosted_service_doc(&shared.endpoints.classic, &sub, svc, embed)))
                }
                Method::DELETE => {
                    if service(&st, &sub, &name)?.deployment.is_some() {
                        return Err(fail(409, "ConflictError", format!("The hosted service {name} has deployments; delete them first.")));
                    }
                    st.sub_mut(&sub).expect("checked").classic.services.remove(&name.to_ascii_lowercase());
                    Ok(ok_xml(req, 200, String::new()))
                }
                _ => Err(not_allowed()),
            }
        }
        (5, "services", "hostedservices", _) if s(4) == "deployments" && m == Method::POST => {
            create_deployment(shared, req, &mut st, &sub, &seg(3))
        }
        (6, "services", "hostedservices", _) if s(4) == "deployments" || s(4) == "deploymentslots" => {
            let (svc_name, key) = (seg(3), seg(5));
            let by_slot = s(4) == "deploymentslots";
            match m {
                Method::GET => {
                    let svc = service(&st, &sub, &svc_name)?;
                    let d = deployment_of(svc, &key, by_slot)?;
                    Ok(ok_xml(req, 200, xml::deployment_doc(svc, d, &shared.endpoints.blob, &sub)))
                }
                Method::POST if by_slot => create_deployment(shared, req, &mut st, &sub, &svc_name),
                Method::DELETE => {
                    let svc = service(&st, &sub, &svc_name)?;
                    deployment_of(svc, &key, by_slot)?;
                    let delete_media = req.q("comp").is_some_and(|c| c.eq_ignore_ascii_case("media"));
                    let effect = Effect::ClassicDeleteRole { sub: sub.clone(), service: svc_name.clone(), role: String::new(), delete_media };
                    Ok(start(shared, req, &mut st, &sub, effect))
                }
                _ => Err(not_allowed()),
            }
        }
        (7, "services", "hostedservices", _) if s(4) == "deployments" && s(6) == "roles" && m == Method::POST => {
            add_role(shared, req, &mut st, &sub, &seg(3), &seg(5))
        }
        (8, "services", "hostedservices", _) if s(4) == "deployments" && s(6) == "roles" => {
            let (svc_name, dep, role) = (seg(3), seg(5), seg(7));
            let svc = service(&st, &sub, &svc_name)?;
            let d = deployment_of(svc, &dep, false)?;
            let r = d.roles.iter().find(|r| r.name.eq_ignore_ascii_case(&role)).ok_or_else(|| role_missing(&role))?;
            match m {
                Method::GET => Ok(ok_xml(req, 200, xml::role_doc(r, &shared.endpoints.blob))),
                Method::DELETE => {
                    if d.roles.len() == 1 {
                        return Err(fail(400, "BadRequest", format!("The role {role} is the only role in deployment {}; delete the deployment instead.", d.name)));
                    }
                    if r.deleting {
                        return Err(conflict());
                    }
                    let delete_media = req.q("comp").is_some_and(|c| c.eq_ignore_ascii_case("media"));
                    role_mut(&mut st, &sub, &svc_name, &role).expect("found above").deleting = true;
                    let effect = Effect::ClassicDeleteRole { sub: sub.clone(), service: svc_name, role, delete_media };
                    Ok(start(shared, req, &mut st, &sub, effect))
                }
                _ => Err(not_allowed()),
            }
        }
        (9, "services", "hostedservices", _) if s(4) == "deployments" && s(6) == "roleinstances" && s(8) == "operations" && m == Method::POST => {
            role_operation(shared, req, &mut st, &sub, &seg(3), &seg(5), &seg(7))
        }
        _ => Err(fail(404, "ResourceNotFound", format!("The requested resource '{}' does not exist.", decode(&req.raw_path)))),
    }
}

/// Service Management versions are dates, the oldest being 2009-10-01.
fn known_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && v >= "2009-10-01"
}

fn not_allowed() -> Fail {
    fail(405, "MethodNotAllowed", "The requested method is not supported on this resource.")
}

fn conflict() -> Fail {
    fail(409, "ConflictError", "Windows Azure is currently performing an operation on this deployment that requires exclusive access.")
}

fn role_missing(role: &str) -> Fail {
    fail(404, "ResourceNotFound", format!("The specified role {role} does not exist."))
}

fn service<'a>(st: &'a State, sub: &str, name: &str) -> Result<&'a CloudService, Fail> {
    st.sub(sub)
        .and_then(|s| s.classic.services.get(&name.to_ascii_lowercase()))
        .ok_or_else(|| fail(404, "ResourceNotFound", "The hosted service name is invalid."))
}

fn deployment_of<'a>(svc: &'a CloudService, key: &str, by_slot: bool) -> Result<&'a Deployment, Fail> {
    let missing = || fail(404, "ResourceNotFound", format!("No deployments were found in hosted service {} for '{key}'.", svc.name));
    let d = svc.deployment.as_ref().ok_or_else(missing)?;
    let matches = if by_slot { key.eq_ignore_ascii_case("production") } else { d.name.eq_ignore_ascii_case(key) };
    matches.then_some(d).ok_or_else(missing)
}

/// The role `role` of the service's deployment, mutable.
pub(crate) fn role_mut<'a>(st: &'a mut State, sub: &str, service: &str, role: &str) -> Option<&'a mut Role> {
    st.sub_mut(sub)?
        .classic
        .services
        .get_mut(&service.to_ascii_lowercase())?
        .deployment
        .as_mut()?
        .roles
        .iter_mut()
        .find(|r| r.name.eq_ignore_ascii_case(role))
}

/// Registers an asynchronous operation and answers 202 with its id in `x-ms-request-id`.
fn start(shared: &Shared, req: &Req, st: &mut State, sub: &str, effect: Effect) -> Response {
    let failure = take_operation_failure(&mut st.faults, Service::Classic, req);
    let op = Operation::new(Scope::Classic { sub: sub.to_string() }, effect, failure, None);
    let id = lro::start(st, &shared.config.lro, op);
    respond(StatusCode::ACCEPTED, &[("x-ms-request-id", id)], "")
}

fn operation_status(shared: &Shared, req: &Req, st: &mut State, id: &str) -> Result<Response, Fail> {
    let known = st.ops.get(id).is_some_and(|op| matches!(&op.scope, Scope::Classic { sub: owner } if owner.eq_ignore_ascii_case(&req.segments[0])));
    if !known || !lro::poll(st, &shared.config.lro, id) {
        return Err(fail(404, "ResourceNotFound", format!("The operation request ID {id} was not found.")));
    }
    let op = &st.ops[id];
    Ok(ok_xml(req, 200, xml::operation(&op.id, op.status(), op.failure.as_ref())))
}

fn role_operation(shared: &Shared, req: &Req, st: &mut State, sub: &str, svc: &str, dep: &str, instance: &str) -> Result<Response, Fail> {
    deployment_of(service(st, sub, svc)?, dep, false)?;
    let body = xml::paths(&req.body);
    let kind = xml::find(&body, "OperationType").unwrap_or("").to_string();
    let r = role_mut(st, sub, svc, instance).ok_or_else(|| role_missing(instance))?;
    if r.deleting || matches!(r.power, ClassicPower::Starting | ClassicPower::Stopping) {
        return Err(conflict());
    }
    let (from, from_status) = (r.power, r.instance_status.clone());
    let (transitional, to, status) = match kind.as_str() {
        "ShutdownRoleOperation" => {
            let dealloc = match xml::find(&body, "PostShutdownAction").unwrap_or("Stopped") {
                "Stopped" => false,
                "StoppedDeallocated" => true,
                other => return Err(fail(400, "BadRequest", format!("The value '{other}' of PostShutdownAction is invalid; use Stopped or StoppedDeallocated."))),
            };
            (ClassicPower::Stopping, ClassicPower::Stopped, if dealloc { "StoppedDeallocated" } else { "StoppedVM" })
        }
        "StartRoleOperation" => (ClassicPower::Starting, ClassicPower::Started, "ReadyRole"),
        "RestartRoleOperation" => {
            if r.power != ClassicPower::Started {
                return Err(fail(400, "BadRequest", format!("Role {instance} is not running and cannot be restarted.")));
            }
            (ClassicPower::Starting, ClassicPower::Started, "ReadyRole")
        }
        other => return Err(fail(400, "BadRequest", format!("The operation type '{other}' is not supported; use ShutdownRoleOperation, StartRoleOperation or RestartRoleOperation."))),
    };
    r.power = transitional;
    r.instance_status = if to == ClassicPower::Started { "RoleStateUnknown".into() } else { "StoppingVM".into() };
    let effect = Effect::ClassicPower {
        sub: sub.into(),
        service: svc.into(),
        role: r.name.clone(),
        to,
        status: status.into(),
        from,
        from_status,
    };
    Ok(start(shared, req, st, sub, effect))
}

fn create_hosted_service(req: &Req, st: &mut State, sub: &str) -> Result<Response, Fail> {
    let body = xml::paths(&req.body);
    let name = xml::find(&body, "ServiceName").filter(|n| !n.is_empty()).ok_or_else(|| fail(400, "BadRequest", "ServiceName is required."))?.to_string();
    let location = xml::find(&body, "Location").or(xml::find(&body, "AffinityGroup")).unwrap_or("West Europe").to_string();
    let label = xml::find(&body, "Label")
        .and_then(|l| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, l).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|| name.clone());
    let c = &mut st.sub_mut(sub).expect("checked").classic;
    if c.services.contains_key(&name.to_ascii_lowercase()) {
        return Err(fail(409, "ConflictError", format!("The specified DNS name is already taken: {name}.")));
    }
    c.services.insert(name.to_ascii_lowercase(), CloudService { name, location, label, created: iso8601(unix_now()), deployment: None });
    Ok(respond(StatusCode::CREATED, &[("x-ms-request-id", req.request_id.clone())], ""))
}

/// Role description read from a `PersistentVMRole` or `Deployment` body.
struct RoleInput {
    name: String,
    size: String,
    os: String,
    subnet: Option<String>,
    os_media: String,
    data: Vec<(u32, u64, String)>,
}

fn read_role(paths: &[(String, String)]) -> Result<RoleInput, Fail> {
    let name = xml::find(paths, "RoleName").filter(|n| !n.is_empty()).ok_or_else(|| fail(400, "BadRequest", "RoleName is required."))?;
    let os_media = xml::find(paths, "OSVirtualHardDisk/MediaLink").ok_or_else(|| fail(400, "BadRequest", "OSVirtualHardDisk/MediaLink is required."))?;
    let mut data = Vec::new();
    let mut lun = None;
    let mut size = None;
    for (p, t) in paths {
        if p.ends_with("DataVirtualHardDisk/Lun") {
            lun = t.parse::<u32>().ok();
        } else if p.ends_with("DataVirtualHardDisk/LogicalDiskSizeInGB") {
            size = t.parse::<u64>().ok();
        } else if p.ends_with("DataVirtualHardDisk/MediaLink") {
            data.push((lun.take().unwrap_or(data.len() as u32), size.take().unwrap_or(1) * GIB, t.clone()));
        }
    }
    Ok(RoleInput {
        name: name.to_string(),
        size: xml::find(paths, "RoleSize").unwrap_or("Small").to_string(),
        os: xml::find(paths, "OSVirtualHardDisk/OS").unwrap_or("Linux").to_string(),
        subnet: xml::find(paths, "SubnetName").map(str::to_string),
        os_media: os_media.to_string(),
        data,
    })
}

/// Opens the VHD a MediaLink names, creating an empty fixed VHD when the blob is absent.
fn media_disk(st: &mut State, media: &str, default_size: u64, lun: Option<u32>) -> Result<ClassicDisk, Fail> {
    let path = media.split_once("://").and_then(|(_, r)| r.split_once('/')).map(|(_, p)| p).unwrap_or("");
    let parts: Vec<String> = path.splitn(3, '/').map(decode).collect();
    let [account, container, blob] = parts.as_slice() else {
        return Err(fail(400, "BadRequest", format!("The MediaLink '{media}' is not a blob URL of this site.")));
    };
    if !account.eq(&st.account) {
        return Err(fail(400, "BadRequest", format!("The storage account '{account}' of MediaLink '{media}' does not exist in this subscription.")));
    }
    let r = BlobRef::new(account, container, blob);
    let size = match st.blobs.get(&r, None) {
        Ok(b) => b.size - PAGE,
        Err(_) => {
            st.create_vhd_blob(&r, default_size).map_err(|f| fail(400, "BadRequest", f.message))?;
            default_size
        }
    };
    let name = blob.trim_end_matches(".vhd").to_string();
    Ok(ClassicDisk { name, lun, size_bytes: size, blob: r })
}

/// Builds a role from its description, creating missing VHDs.
fn build_role(st: &mut State, input: RoleInput, ip: String) -> Result<Role, Fail> {
    let os_disk = media_disk(st, &input.os_media, 30 * GIB, None)?;
    let mut data_disks = Vec::new();
    for (lun, size, media) in &input.data {
        data_disks.push(media_disk(st, media, *size, Some(*lun))?);
    }
    Ok(Role {
        name: input.name,
        size: input.size,
        os: input.os,
        subnet: input.subnet,
        ip,
        power: ClassicPower::Starting,
        instance_status: "Provisioning".into(),
        os_disk,
        data_disks,
        deleting: false,
    })
}

/// A private address for a new role: from its subnet's prefix when the network is known
/// (Azure hands out .4 upwards), else from 10.0.0.0/24.
fn next_ip(st: &State, sub: &str, vnet: Option<&str>, subnet: Option<&str>) -> String {
    let Some(s) = st.sub(sub) else { return "10.0.0.4".into() };
    let n: usize = s.classic.services.values().filter_map(|c| c.deployment.as_ref()).map(|d| d.roles.len()).sum();
    let prefix = vnet
        .and_then(|v| s.classic.vnets.get(&v.to_ascii_lowercase()))
        .and_then(|v| v.subnets.iter().find(|(name, _)| subnet.is_some_and(|sn| sn.eq_ignore_ascii_case(name))))
        .map(|(_, p)| p.as_str())
        .unwrap_or("10.0.0.0/24");
    let octets: Vec<&str> = prefix.split('/').next().unwrap_or("10.0.0.0").split('.').collect();
    match octets.as_slice() {
        [a, b, c, _] => format!("{a}.{b}.{c}.{}", 4 + n % 250),
        _ => format!("10.0.0.{}", 4 + n % 250),
    }
}

fn add_role(shared: &Shared, req: &Req, st: &mut State, sub: &str, svc: &str, dep: &str) -> Result<Response, Fail> {
    let d = deployment_of(service(st, sub, svc)?, dep, false)?;
    let input = read_role(&xml::paths(&req.body))?;
    if d.roles.iter().any(|r| r.name.eq_ignore_ascii_case(&input.name)) {
        return Err(fail(409, "ConflictError", format!("A role named {} already exists in the deployment.", input.name)));
    }
    let vnet = d.vnet.clone();
    let ip = next_ip(st, sub, vnet.as_deref(), input.subnet.as_deref());
    let role = build_role(st, input, ip)?;
    let (name, service_name) = (role.name.clone(), svc.to_string());
    st.sub_mut(sub).expect("checked").classic.services.get_mut(&svc.to_ascii_lowercase()).and_then(|s| s.deployment.as_mut()).expect("found above").roles.push(role);
    let effect = Effect::ClassicPower {
        sub: sub.into(),
        service: service_name,
        role: name,
        to: ClassicPower::Started,
        status: "ReadyRole".into(),
        from: ClassicPower::Stopped,
        from_status: "ProvisioningFailed".into(),
    };
    Ok(start(shared, req, st, sub, effect))
}

fn create_deployment(shared: &Shared, req: &Req, st: &mut State, sub: &str, svc: &str) -> Result<Response, Fail> {
    if service(st, sub, svc)?.deployment.is_some() {
        return Err(fail(409, "ConflictError", format!("There is already a deployment in the production slot of {svc}.")));
    }
    let paths = xml::paths(&req.body);
    let name = xml::find(&paths, "Deployment/Name").or(xml::find(&paths, "Name")).unwrap_or(svc).to_string();
    let vnet = xml::find(&paths, "VirtualNetworkName").map(str::to_string);
    if let Some(v) = vnet.as_ref().filter(|v| !st.sub(sub).is_some_and(|s| s.classic.vnets.contains_key(&v.to_ascii_lowercase()))) {
        return Err(fail(400, "BadRequest", format!("The virtual network name {v} is not valid.")));
    }
    let input = read_role(&paths)?;
    let ip = next_ip(st, sub, vnet.as_deref(), input.subnet.as_deref());
    let role = build_role(st, input, ip)?;
    let role_name = role.name.clone();
    let s = st.sub_mut(sub).expect("checked").classic.services.get_mut(&svc.to_ascii_lowercase()).expect("found above");
    s.deployment = Some(Deployment { name, private_id: uuid::Uuid::new_v4().simple().to_string(), vnet, roles: vec![role], created: iso8601(unix_now()) });
    let effect = Effect::ClassicPower {
        sub: sub.into(),
        service: svc.into(),
        role: role_name,
        to: ClassicPower::Started,
        status: "ReadyRole".into(),
        from: ClassicPower::Stopped,
        from_status: "ProvisioningFailed".into(),
    };
    Ok(start(shared, req, st, sub, effect))
}

/// Completes a role (or, with an empty role name, a whole deployment) deletion.
pub(crate) fn apply_delete_role(st: &mut State, sub: &str, service: &str, role: &str, delete_media: bool, ok: bool) {
    let Some(svc) = st.sub_mut(sub).and_then(|s| s.classic.services.get_mut(&service.to_ascii_lowercase())) else { return };
    let Some(d) = svc.deployment.as_mut() else { return };
    if !ok {
        d.roles.iter_mut().for_each(|r| r.deleting = false);
        return;
    }
    let removed: Vec<Role> = if role.is_empty() {
        svc.deployment.take().map(|d| d.roles).unwrap_or_default()
    } else {
        let (gone, kept): (Vec<Role>, Vec<Role>) = std::mem::take(&mut d.roles).into_iter().partition(|r| r.name.eq_ignore_ascii_case(role));
        d.roles = kept;
        gone
    };
    if delete_media {
        for r in removed {
            for disk in std::iter::once(&r.os_disk).chain(r.data_disks.iter()) {
                let _ = st.blobs.delete_blob(&disk.blob);
            }
        }
    }
}

/// Creates a classic VM (cloud service, deployment and role) directly, for lab setup.
pub(crate) fn create_vm(st: &mut State, sub: &str, service_name: &str, location: &str, vnet: Option<String>, role: RoleSetup) -> Result<(), String> {
    let os_blob = BlobRef::new(&st.account.clone(), CLASSIC_CONTAINER, &format!("{service_name}-{}-os.vhd", role.name));
    st.create_vhd_blob(&os_blob, role.os_disk_bytes).map_err(|f| f.message)?;
    let mut data_disks = Vec::new();
    for (i, size) in role.data_disk_bytes.iter().enumerate() {
        let b = BlobRef::new(&st.account.clone(), CLASSIC_CONTAINER, &format!("{service_name}-{}-data{i}.vhd", role.name));
        st.create_vhd_blob(&b, *size).map_err(|f| f.message)?;
        data_disks.push(ClassicDisk { name: b.blob.trim_end_matches(".vhd").into(), lun: Some(i as u32), size_bytes: *size, blob: b });
    }
    let ip = next_ip(st, sub, vnet.as_deref(), role.subnet.as_deref());
    let r = Role {
        name: role.name.clone(),
        size: role.size,
        os: role.os,
        subnet: role.subnet,
        ip,
        power: if role.running { ClassicPower::Started } else { ClassicPower::Stopped },
        instance_status: if role.running { "ReadyRole" } else { "StoppedDeallocated" }.into(),
        os_disk: ClassicDisk { name: os_blob.blob.trim_end_matches(".vhd").into(), lun: None, size_bytes: role.os_disk_bytes, blob: os_blob },
        data_disks,
        deleting: false,
    };
    let s = st.sub_mut(sub).ok_or_else(|| format!("subscription '{sub}' does not exist"))?;
    let svc = s.classic.services.entry(service_name.to_ascii_lowercase()).or_insert_with(|| CloudService {
        name: service_name.into(),
        location: location.into(),
        label: service_name.into(),
        created: iso8601(unix_now()),
        deployment: None,
    });
    let dep = svc.deployment.get_or_insert_with(|| Deployment {
        name: service_name.into(),
        private_id: uuid::Uuid::new_v4().simple().to_string(),
        vnet: vnet.clone(),
        roles: Vec::new(),
        created: iso8601(unix_now()),
    });
    if dep.roles.iter().any(|x| x.name.eq_ignore_ascii_case(&r.name)) {
        return Err(format!("role '{}' already exists in cloud service '{service_name}'", r.name));
    }
    dep.roles.push(r);
    Ok(())
}

/// A classic VM to create at setup.
pub(crate) struct RoleSetup {
    pub name: String,
    pub size: String,
    pub os: String,
    pub subnet: Option<String>,
    pub running: bool,
    pub os_disk_bytes: u64,
    pub data_disk_bytes: Vec<u64>,
}
