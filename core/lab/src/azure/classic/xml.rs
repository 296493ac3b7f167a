//! Service Management XML: rendering the documents the lab returns and reading the few
//! request bodies it accepts.

use crate::azure::http::xml_escape as e;
use crate::azure::state::{ClassicDisk, ClassicVnet, CloudService, Deployment, Role};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Namespace of every Service Management document.
pub(crate) const NS: &str = r#"xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance""#;

/// `(element path, text)` for every text node, e.g. `("PersistentVMRole/RoleName", "vm1")`.
pub(crate) fn paths(body: &[u8]) -> Vec<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(s)) => stack.push(String::from_utf8_lossy(s.local_name().as_ref()).into_owned()),
            Ok(Event::End(_)) => {
                stack.pop();
            }
            Ok(Event::Text(t)) => {
                if let Some(text) = t.decode().ok().filter(|t| !t.trim().is_empty()) {
                    out.push((stack.join("/"), text.trim().to_string()));
                }
            }
            Ok(Event::GeneralRef(r)) => {
                let name: &[u8] = &r;
                let ch = match name {
                    b"amp" => "&",
                    b"lt" => "<",
                    b"gt" => ">",
                    b"quot" => "\"",
                    b"apos" => "'",
                    _ => "",
                };
                let path = stack.join("/");
                match out.last_mut() {
                    Some((p, t)) if *p == path => t.push_str(ch),
                    _ => out.push((path, ch.to_string())),
                }
            }
            Ok(Event::Eof) | Err(_) => return out,
            _ => {}
        }
        buf.clear();
    }
}

/// Text of the first element whose path ends with `suffix`.
pub(crate) fn find<'a>(paths: &'a [(String, String)], suffix: &str) -> Option<&'a str> {
    paths.iter().find(|(p, _)| p == suffix || p.ends_with(&format!("/{suffix}"))).map(|(_, t)| t.as_str())
}

pub(crate) fn error(code: &str, message: &str) -> String {
    format!(r#"<?xml version="1.0" encoding="utf-8"?><Error {NS}><Code>{}</Code><Message>{}</Message></Error>"#, e(code), e(message))
}

fn label(s: &str) -> String {
    STANDARD.encode(s)
}

pub(crate) fn hosted_service(base: &str, sub: &str, svc: &CloudService, embed: bool) -> String {
    let deployments = match (&svc.deployment, embed) {
        (Some(d), true) => format!("<Deployments>{}</Deployments>", deployment_body(svc, d, base, sub)),
        (None, true) => "<Deployments/>".into(),
        _ => String::new(),
    };
    format!(
        "<HostedService><Url>{base}/{sub}/services/hostedservices/{name}</Url><ServiceName>{name}</ServiceName>\
         <HostedServiceProperties><Description/><Location>{loc}</Location><Label>{label}</Label><Status>Created</Status>\
         <DateCreated>{created}</DateCreated><DateLastModified>{created}</DateLastModified><ExtendedProperties/></HostedServiceProperties>\
         {deployments}<DefaultWinRMCertificateThumbprint/></HostedService>",
        name = e(&svc.name),
        loc = e(&svc.location),
        label = label(&svc.label),
        created = svc.created,
    )
}

pub(crate) fn hosted_service_doc(base: &str, sub: &str, svc: &CloudService, embed: bool) -> String {
    let inner = hosted_service(base, sub, svc, embed);
    let inner = inner.strip_prefix("<HostedService>").and_then(|s| s.strip_suffix("</HostedService>")).unwrap_or(&inner);
    format!(r#"<?xml version="1.0" encoding="utf-8"?><HostedService {NS}>{inner}</HostedService>"#)
}

pub(crate) fn hosted_services(base: &str, sub: &str, services: &[&CloudService]) -> String {
    let items: String = services.iter().map(|s| hosted_service(base, sub, s, false)).collect();
    format!(r#"<?xml version="1.0" encoding="utf-8"?><HostedServices {NS}>{items}</HostedServices>"#)
}

fn disk_xml(tag: &str, d: &ClassicDisk, base_blob: &str, os: Option<&str>) -> String {
    let media = media_link(base_blob, d);
    let gb = d.size_bytes.div_ceil(1 << 30);
    match os {
        Some(os) => format!(
            "<{tag}><HostCaching>ReadWrite</HostCaching><DiskName>{}</DiskName><MediaLink>{}</MediaLink><SourceImageName/><OS>{}</OS><RemoteSourceImageLink/><IOType>Standard</IOType></{tag}>",
            e(&d.name), e(&media), e(os)
        ),
        None => format!(
            "<{tag}><HostCaching>None</HostCaching><DiskName>{}</DiskName><Lun>{}</Lun><LogicalDiskSizeInGB>{gb}</LogicalDiskSizeInGB><MediaLink>{}</MediaLink><IOType>Standard</IOType></{tag}>",
            e(&d.name), d.lun.unwrap_or(0), e(&media)
        ),
    }
}

/// The blob URL of a classic disk on the lab's blob endpoint.
pub(crate) fn media_link(base_blob: &str, d: &ClassicDisk) -> String {
    format!("{base_blob}/{}/{}/{}", d.blob.account, d.blob.container, d.blob.blob)
}

pub(crate) fn role_body(r: &Role, base_blob: &str) -> String {
    let subnet = r.subnet.as_ref().map(|s| format!("<SubnetNames><SubnetName>{}</SubnetName></SubnetNames>", e(s))).unwrap_or_default();
    let data: String = r.data_disks.iter().map(|d| disk_xml("DataVirtualHardDisk", d, base_blob, None)).collect();
    format!(
        "<RoleName>{name}</RoleName><OsVersion/><RoleType>PersistentVMRole</RoleType>\
         <ConfigurationSets><ConfigurationSet i:type=\"NetworkConfigurationSet\"><ConfigurationSetType>NetworkConfiguration</ConfigurationSetType>\
         <InputEndpoints/>{subnet}</ConfigurationSet></ConfigurationSets>\
         <DataVirtualHardDisks>{data}</DataVirtualHardDisks>{os}<RoleSize>{size}</RoleSize><ProvisionGuestAgent>true</ProvisionGuestAgent>",
        name = e(&r.name),
        os = disk_xml("OSVirtualHardDisk", &r.os_disk, base_blob, Some(&r.os)),
        size = e(&r.size),
    )
}

pub(crate) fn role_doc(r: &Role, base_blob: &str) -> String {
    format!(r#"<?xml version="1.0" encoding="utf-8"?><PersistentVMRole {NS}>{}</PersistentVMRole>"#, role_body(r, base_blob))
}

fn deployment_body(svc: &CloudService, d: &Deployment, base_blob: &str, _sub: &str) -> String {
    let instances: String = d
        .roles
        .iter()
        .map(|r| {
            format!(
                "<RoleInstance><RoleName>{n}</RoleName><InstanceName>{n}</InstanceName><InstanceStatus>{st}</InstanceStatus>\
                 <InstanceUpgradeDomain>0</InstanceUpgradeDomain><InstanceFaultDomain>0</InstanceFaultDomain><InstanceSize>{size}</InstanceSize>\
                 <InstanceStateDetails/><IpAddress>{ip}</IpAddress><PowerState>{p}</PowerState><HostName>{n}</HostName>\
                 <GuestAgentStatus><Status>{ga}</Status></GuestAgentStatus></RoleInstance>",
                n = e(&r.name),
                st = e(&r.instance_status),
                size = e(&r.size),
                ip = e(&r.ip),
                p = r.power.as_str(),
                ga = if r.power == crate::azure::state::ClassicPower::Started { "Ready" } else { "NotReady" },
            )
        })
        .collect();
    let roles: String = d.roles.iter().map(|r| format!("<Role i:type=\"PersistentVMRole\">{}</Role>", role_body(r, base_blob))).collect();
    let vnet = d.vnet.as_ref().map(|v| format!("<VirtualNetworkName>{}</VirtualNetworkName>", e(v))).unwrap_or_default();
    format!(
        "<Name>{name}</Name><DeploymentSlot>Production</DeploymentSlot><PrivateID>{pid}</PrivateID><Status>Running</Status>\
         <Label>{label}</Label><Url>http://{svc}.cloudapp.net/</Url><Configuration>{cfg}</Configuration>\
         <RoleInstanceList>{instances}</RoleInstanceList><UpgradeDomainCount>1</UpgradeDomainCount><RoleList>{roles}</RoleList>\
         <SdkVersion/><Locked>false</Locked><RollbackAllowed>false</RollbackAllowed><CreatedTime>{c}</CreatedTime>\
         <LastModifiedTime>{c}</LastModifiedTime>{vnet}<ExtendedProperties/><InternalDnsSuffix>{svc}.internal.cloudapp.net</InternalDnsSuffix>",
        name = e(&d.name),
        pid = d.private_id,
        label = label(&d.name),
        svc = e(&svc.name),
        cfg = label("<ServiceConfiguration/>"),
        c = d.created,
    )
}

pub(crate) fn deployment_doc(svc: &CloudService, d: &Deployment, base_blob: &str, sub: &str) -> String {
    format!(r#"<?xml version="1.0" encoding="utf-8"?><Deployment {NS}>{}</Deployment>"#, deployment_body(svc, d, base_blob, sub))
}

pub(crate) fn vnets(list: &[&ClassicVnet]) -> String {
    let sites: String = list
        .iter()
        .map(|v| {
            let prefixes: String = v.address_prefixes.iter().map(|p| format!("<AddressPrefix>{}</AddressPrefix>", e(p))).collect();
            let subnets: String = v.subnets.iter().map(|(n, p)| format!("<Subnet><Name>{}</Name><AddressPrefix>{}</AddressPrefix></Subnet>", e(n), e(p))).collect();
            format!(
                "<VirtualNetworkSite><Name>{n}</Name><Label>{n}</Label><Id>{id}</Id><Location>{loc}</Location><State>Created</State><InUse>true</InUse>\
                 <AddressSpace><AddressPrefixes>{prefixes}</AddressPrefixes></AddressSpace><Subnets>{subnets}</Subnets></VirtualNetworkSite>",
                n = e(&v.name),
                id = v.id,
                loc = e(&v.location),
            )
        })
        .collect();
    format!(r#"<?xml version="1.0" encoding="utf-8"?><VirtualNetworkSites {NS}>{sites}</VirtualNetworkSites>"#)
}

pub(crate) fn operation(id: &str, status: &str, failure: Option<&(String, String)>) -> String {
    let tail = match (status, failure) {
        ("InProgress", _) => String::new(),
        ("Failed", Some((code, message))) => format!("<HttpStatusCode>400</HttpStatusCode><Error><Code>{}</Code><Message>{}</Message></Error>", e(code), e(message)),
        _ => "<HttpStatusCode>200</HttpStatusCode>".into(),
    };
    format!(r#"<?xml version="1.0" encoding="utf-8"?><Operation {NS}><ID>{id}</ID><Status>{status}</Status>{tail}</Operation>"#)
}
