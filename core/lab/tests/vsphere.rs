//! The simulated vSphere site, driven over real HTTP with real vim25 SOAP bodies.

use std::time::Duration;

use homeward_lab::vsphere::soap::{Element, parse_document};
use homeward_lab::vsphere::{Fault, LabError, TaskGate, VsphereLab};
use quick_xml::escape::escape;

const VCENTER: &str = r#"
mode = "vcenter"
datacenter = "dc1"

[[hosts]]
name = "esx1.lab.local"
[[hosts]]
name = "esx2.lab.local"

[[datastores]]
name = "datastore1"
capacity_gib = 100
[[datastores]]
name = "local-esx1"
capacity_gib = 20
hosts = ["esx1.lab.local"]

[[networks]]
name = "VM Network"

[[vms]]
name = "web01"
host = "esx1.lab.local"
datastore = "datastore1"
guest_id = "rhel8_64Guest"
power = "poweredOn"
cpus = 2
memory_mb = 2048
networks = ["VM Network"]
extra_config = { "disk.EnableUUID" = "TRUE" }
change_tracking = true
disks = [{ capacity_mib = 64 }, { capacity_mib = 32 }]

[[users]]
name = "administrator@vsphere.local"
password = "Secret1!"
role = "Admin"

[[users]]
name = "auditor@vsphere.local"
password = "Look0nly"
role = "ReadOnly"
"#;

fn esxi(license: &str) -> String {
    format!(
        r#"
mode = "esxi"
license = "{license}"
hosts = [{{ name = "esx-standalone.lab.local" }}]
datastores = [{{ name = "datastore1", capacity_gib = 50 }}]
networks = [{{ name = "VM Network" }}]
vms = [{{ name = "mt01", power = "poweredOff", disks = [{{ capacity_mib = 16 }}], snapshots = ["pre-failback"] }}]
users = [{{ name = "root", password = "esxroot" }}]
"#
    )
}

/// A test's lab with its directory; the lab shuts down on drop even when the test fails.
struct Lab {
    lab: VsphereLab,
    _dir: tempfile::TempDir,
}

async fn lab(spec: &str) -> Lab {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = VsphereLab::from_toml(spec, dir.path())
        .await
        .expect("lab starts");
    Lab { lab, _dir: dir }
}

/// A minimal vim25 client: builds envelopes, keeps the session cookie, parses answers.
struct Client {
    http: reqwest::Client,
    url: String,
    cookie: Option<String>,
}

/// A SOAP fault: its vim25 type and the fault element from `detail`.
#[derive(Debug)]
struct SoapFault {
    kind: String,
    detail: Element,
}

impl Client {
    fn new(lab: &VsphereLab) -> Self {
        Client {
            http: reqwest::Client::new(),
            url: lab.sdk_url(),
            cookie: None,
        }
    }

    async fn raw(
        &self,
        method: &str,
        this: (&str, &str),
        args: &str,
    ) -> reqwest::Result<reqwest::Response> {
        let body = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><{method} xmlns="urn:vim25"><_this type="{}">{}</_this>{args}</{method}></soapenv:Body></soapenv:Envelope>"#,
            this.0,
            escape(this.1)
        );
        let mut req = self
            .http
            .post(&self.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "urn:vim25/8.0.2.0")
            .body(body);
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", format!("vmware_soap_session={c}"));
        }
        req.send().await
    }

    async fn call(
        &self,
        method: &str,
        this: (&str, &str),
        args: &str,
    ) -> Result<Element, SoapFault> {
        let resp = self.raw(method, this, args).await.expect("HTTP exchange");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let env = parse_document(text.as_bytes()).expect("response is XML");
        assert_eq!(env.name, "Envelope", "{text}");
        let body = env.child("Body").expect("Body");
        let first = body.children.first().expect("Body has content").clone();
        if first.name == "Fault" {
            assert_eq!(status, 500, "faults come with HTTP 500");
            assert_eq!(first.child_text("faultcode"), Some("ServerFaultCode"));
            let detail = first
                .child("detail")
                .and_then(|d| d.children.first())
                .expect("fault detail")
                .clone();
            assert_eq!(
                detail.name,
                format!("{}Fault", detail.xsi_type.clone().unwrap_or_default()),
                "{text}"
            );
            return Err(SoapFault {
                kind: detail.xsi_type.clone().unwrap_or_default(),
                detail,
            });
        }
        assert_eq!(status, 200);
        assert_eq!(first.name, format!("{method}Response"), "{text}");
        Ok(first)
    }

    async fn ok(&self, method: &str, this: (&str, &str), args: &str) -> Element {
        match self.call(method, this, args).await {
            Ok(e) => e,
            Err(f) => panic!("{method} failed with {}: {:?}", f.kind, f.detail),
        }
    }

    async fn fault(&self, method: &str, this: (&str, &str), args: &str) -> SoapFault {
        match self.call(method, this, args).await {
            Ok(e) => panic!("{method} succeeded but a fault was expected: {e:?}"),
            Err(f) => f,
        }
    }

    async fn content(&self) -> Element {
        let r = self
            .ok(
                "RetrieveServiceContent",
                ("ServiceInstance", "ServiceInstance"),
                "",
            )
            .await;
        r.child("returnval").expect("returnval").clone()
    }

    async fn login(&mut self, user: &str, password: &str) -> Result<Element, SoapFault> {
        let content = self.content().await;
        let sm = content.child("sessionManager").unwrap().as_moref().unwrap();
        let args = format!(
            "<userName>{}</userName><password>{}</password>",
            escape(user),
            escape(password)
        );
        let resp = self
            .raw("Login", (&sm.ty, &sm.value), &args)
            .await
            .expect("HTTP");
        let cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().await.unwrap();
        let env = parse_document(text.as_bytes()).unwrap();
        let first = env.child("Body").unwrap().children[0].clone();
        if first.name == "Fault" {
            let detail = first.child("detail").unwrap().children[0].clone();
            return Err(SoapFault {
                kind: detail.xsi_type.clone().unwrap_or_default(),
                detail,
            });
        }
        let cookie = cookie.expect("Login sets a cookie");
        assert!(cookie.starts_with("vmware_soap_session=\""), "{cookie}");
        let value = cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .trim_matches('"')
            .to_string();
        self.cookie = Some(value);
        Ok(first.child("returnval").unwrap().clone())
    }

    /// RetrievePropertiesEx on one object; returns (name, val) pairs.
    async fn props(
        &self,
        obj: (&str, &str),
        paths: &[&str],
    ) -> Result<Vec<(String, Element)>, SoapFault> {
        let content = self.content().await;
        let pc = content
            .child("propertyCollector")
            .unwrap()
            .as_moref()
            .unwrap();
        let path_xml: String = paths
            .iter()
            .map(|p| format!("<pathSet>{p}</pathSet>"))
            .collect();
        let args = format!(
            r#"<specSet><propSet><type>{}</type>{path_xml}</propSet><objectSet><obj type="{}">{}</obj></objectSet></specSet><options/>"#,
            obj.0,
            obj.0,
            escape(obj.1)
        );
        let r = self
            .call("RetrievePropertiesEx", (&pc.ty, &pc.value), &args)
            .await?;
        let Some(rv) = r.child("returnval") else {
            return Ok(vec![]);
        };
        let objects = rv.child("objects").expect("objects");
        Ok(objects
            .children_named("propSet")
            .map(|p| {
                (
                    p.child_text("name").unwrap().to_string(),
                    p.child("val").unwrap().clone(),
                )
            })
            .collect())
    }

    async fn prop(&self, obj: (&str, &str), path: &str) -> Element {
        let props = self
            .props(obj, &[path])
            .await
            .unwrap_or_else(|f| panic!("reading {path}: {}", f.kind));
        props
            .into_iter()
            .find(|(n, _)| n == path)
            .unwrap_or_else(|| panic!("{path} not returned"))
            .1
    }

    /// Runs a task method and waits for its terminal state; returns the TaskInfo.
    async fn task(&self, method: &str, this: (&str, &str), args: &str) -> Element {
        let r = self.ok(method, this, args).await;
        let task = r.child("returnval").unwrap().as_moref().unwrap();
        assert_eq!(task.ty, "Task");
        self.wait(&task.value).await
    }

    async fn wait(&self, task: &str) -> Element {
        // Tasks finish as soon as the lab's executor runs; the bound only turns a hang into a failure.
        for _ in 0..500 {
            let info = self.prop(("Task", task), "info").await;
            match info.child_text("state") {
                Some("success") | Some("error") => return info,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        panic!("task {task} never finished");
    }

    async fn task_ok(&self, method: &str, this: (&str, &str), args: &str) -> Element {
        let info = self.task(method, this, args).await;
        assert_eq!(
            info.child_text("state"),
            Some("success"),
            "{method}: {info:?}"
        );
        info
    }

    async fn task_err(&self, method: &str, this: (&str, &str), args: &str) -> String {
        let info = self.task(method, this, args).await;
        assert_eq!(
            info.child_text("state"),
            Some("error"),
            "{method} should fail: {info:?}"
        );
        info.child("error")
            .unwrap()
            .child("fault")
            .unwrap()
            .xsi_type
            .clone()
            .unwrap()
    }
}

fn crate_vmdk_capacity(desc: &std::path::Path) -> u64 {
    homeward_lab::vmdk::read_descriptor(desc)
        .unwrap()
        .capacity_bytes
}

fn vm_this(lab: &VsphereLab, name: &str) -> (String, String) {
    let m = lab.vm_ref(name).expect("vm exists");
    (m.ty, m.value)
}

fn as_pair(p: &(String, String)) -> (&str, &str) {
    (p.0.as_str(), p.1.as_str())
}

/// The change id CBT reports for the `index`th virtual disk of a device list.
fn disk_change_id(config_hw_device: &Element, index: usize) -> String {
    devices(config_hw_device, "VirtualDisk")[index]
        .child("backing")
        .unwrap()
        .child_text("changeId")
        .unwrap()
        .to_string()
}

fn devices(config_hw_device: &Element, ty: &str) -> Vec<Element> {
    config_hw_device
        .children
        .iter()
        .filter(|d| d.xsi_type.as_deref() == Some(ty))
        .cloned()
        .collect()
}

fn changed_areas(r: &Element) -> Vec<(u64, u64)> {
    r.child("returnval")
        .unwrap()
        .children_named("changedArea")
        .map(|a| {
            (
                a.child_i64("start").unwrap() as u64,
                a.child_i64("length").unwrap() as u64,
            )
        })
        .collect()
}

#[tokio::test]
async fn service_content_login_cookie_and_session_end() {
    let l = lab(VCENTER).await;
    let mut c = Client::new(&l.lab);
    let content = c.content().await;
    let about = content.child("about").unwrap();
    assert_eq!(about.child_text("apiType"), Some("VirtualCenter"));
    assert_eq!(
        content
            .child("rootFolder")
            .unwrap()
            .as_moref()
            .unwrap()
            .value,
        "group-d1"
    );
    assert_eq!(
        content.child("propertyCollector").unwrap().attr("type"),
        Some("PropertyCollector")
    );
    for m in [
        "viewManager",
        "sessionManager",
        "licenseManager",
        "authorizationManager",
    ] {
        assert!(content.child(m).is_some(), "{m} missing");
    }

    let f = c
        .props(("Folder", "group-d1"), &["name"])
        .await
        .unwrap_err();
    assert_eq!(f.kind, "NotAuthenticated");

    let f = c
        .login("administrator@vsphere.local", "wrong")
        .await
        .unwrap_err();
    assert_eq!(f.kind, "InvalidLogin");
    assert_eq!(f.detail.name, "InvalidLoginFault");

    let creds = l.lab.credentials();
    let session = c.login(&creds.user, &creds.password).await.unwrap();
    assert_eq!(
        session.child_text("userName"),
        Some("administrator@vsphere.local")
    );
    let current = c
        .prop(("SessionManager", "SessionManager"), "currentSession")
        .await;
    assert_eq!(current.xsi_type.as_deref(), Some("UserSession"));
    assert_eq!(current.child_text("key"), c.cookie.as_deref());

    c.ok("Logout", ("SessionManager", "SessionManager"), "")
        .await;
    assert_eq!(
        c.props(("Folder", "group-d1"), &["name"])
            .await
            .unwrap_err()
            .kind,
        "NotAuthenticated"
    );

    c.login(&creds.user, &creds.password).await.unwrap();
    assert_eq!(
        c.prop(("Folder", "group-d1"), "name").await.text,
        "Datacenters"
    );
    l.lab.expire_sessions();
    let f = c
        .props(("Folder", "group-d1"), &["name"])
        .await
        .unwrap_err();
    assert_eq!(f.kind, "NotAuthenticated");
    assert_eq!(
        f.detail.child("object").unwrap().as_moref().unwrap().value,
        "propertyCollector"
    );
}

#[tokio::test]
async fn inventory_through_container_views_and_traversal() {
    let l = lab(VCENTER).await;
    let mut c = Client::new(&l.lab);
    let creds = l.lab.credentials();
    c.login(&creds.user, &creds.password).await.unwrap();

    let view = c
        .ok(
            "CreateContainerView",
            ("ViewManager", "ViewManager"),
            r#"<container type="Folder">group-d1</container><type>Datacenter</type><type>HostSystem</type><type>Datastore</type><type>Network</type><type>VirtualMachine</type><recursive>true</recursive>"#,
        )
        .await;
    let view = view.child("returnval").unwrap().as_moref().unwrap();
    assert_eq!(view.ty, "ContainerView");

    // One RetrievePropertiesEx over the view, as adapters list inventory.
    let args = format!(
        r#"<specSet>
            <propSet><type>Datacenter</type><pathSet>name</pathSet></propSet>
            <propSet><type>HostSystem</type><pathSet>name</pathSet><pathSet>datastore</pathSet><pathSet>runtime.connectionState</pathSet></propSet>
            <propSet><type>Datastore</type><pathSet>name</pathSet><pathSet>summary.capacity</pathSet><pathSet>summary.freeSpace</pathSet><pathSet>summary.type</pathSet><pathSet>host</pathSet></propSet>
            <propSet><type>Network</type><pathSet>name</pathSet></propSet>
            <propSet><type>VirtualMachine</type><pathSet>name</pathSet><pathSet>runtime.powerState</pathSet><pathSet>config.hardware.device</pathSet><pathSet>config.extraConfig</pathSet><pathSet>config.guestId</pathSet><pathSet>config.uuid</pathSet><pathSet>config.changeTrackingEnabled</pathSet><pathSet>snapshot</pathSet></propSet>
            <objectSet><obj type="ContainerView">{}</obj><skip>true</skip>
              <selectSet xsi:type="TraversalSpec"><name>traverseEntities</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet>
            </objectSet></specSet><options/>"#,
        escape(&view.value)
    );
    let r = c
        .ok(
            "RetrievePropertiesEx",
            ("PropertyCollector", "propertyCollector"),
            &args,
        )
        .await;
    let objects: Vec<Element> = r
        .child("returnval")
        .unwrap()
        .children_named("objects")
        .cloned()
        .collect();
    let of_type = |t: &str| {
        objects
            .iter()
            .filter(|o| o.child("obj").unwrap().attr("type") == Some(t))
            .cloned()
            .collect::<Vec<_>>()
    };
    let prop = |o: &Element, name: &str| {
        o.children_named("propSet")
            .find(|p| p.child_text("name") == Some(name))
            .and_then(|p| p.child("val"))
            .cloned()
    };
    assert_eq!(of_type("Datacenter").len(), 1);
    assert_eq!(prop(&of_type("Datacenter")[0], "name").unwrap().text, "dc1");
    assert_eq!(of_type("HostSystem").len(), 2);
    assert_eq!(of_type("Network").len(), 1);
    assert_eq!(of_type("VirtualMachine").len(), 1);

    let stores = of_type("Datastore");
    assert_eq!(stores.len(), 2);
    let ds1 = stores
        .iter()
        .find(|d| prop(d, "name").unwrap().text == "datastore1")
        .unwrap();
    let cap = prop(ds1, "summary.capacity").unwrap();
    assert_eq!(cap.xsi_type.as_deref(), Some("long"));
    assert_eq!(cap.text, (100u64 << 30).to_string());
    let free: u64 = prop(ds1, "summary.freeSpace")
        .unwrap()
        .text
        .parse()
        .unwrap();
    assert!(free > 0 && free <= 100 << 30);
    assert_eq!(prop(ds1, "summary.type").unwrap().text, "VMFS");
    assert_eq!(
        prop(ds1, "host")
            .unwrap()
            .children_named("DatastoreHostMount")
            .count(),
        2
    );
    let local = stores
        .iter()
        .find(|d| prop(d, "name").unwrap().text == "local-esx1")
        .unwrap();
    let mounts: Vec<Element> = prop(local, "host")
        .unwrap()
        .children_named("DatastoreHostMount")
        .cloned()
        .collect();
    assert_eq!(mounts.len(), 1, "local-esx1 is mounted by esx1 only");
    assert_eq!(
        mounts[0]
            .child("mountInfo")
            .unwrap()
            .child_text("accessMode"),
        Some("readWrite")
    );

    let vm = &of_type("VirtualMachine")[0];
    assert_eq!(prop(vm, "name").unwrap().text, "web01");
    let power = prop(vm, "runtime.powerState").unwrap();
    assert_eq!(
        (power.xsi_type.as_deref(), power.text.as_str()),
        (Some("VirtualMachinePowerState"), "poweredOn")
    );
    assert_eq!(prop(vm, "config.guestId").unwrap().text, "rhel8_64Guest");
    assert_eq!(prop(vm, "config.uuid").unwrap().text.len(), 36);
    assert_eq!(
        prop(vm, "config.changeTrackingEnabled").unwrap().text,
        "true"
    );
    assert!(
        prop(vm, "snapshot").is_none(),
        "unset properties are omitted"
    );
    let hw = prop(vm, "config.hardware.device").unwrap();
    assert_eq!(hw.xsi_type.as_deref(), Some("ArrayOfVirtualDevice"));
    let disks = devices(&hw, "VirtualDisk");
    assert_eq!(disks.len(), 2);
    let backing = disks[0].child("backing").unwrap();
    assert_eq!(
        backing.xsi_type.as_deref(),
        Some("VirtualDiskFlatVer2BackingInfo")
    );
    assert_eq!(
        backing.child_text("fileName"),
        Some("[datastore1] web01/web01.vmdk")
    );
    assert!(backing.child_text("uuid").unwrap().starts_with("6000C29"));
    assert!(backing.child_text("changeId").unwrap().ends_with("/0"));
    assert_eq!(disks[0].child_i64("capacityInBytes"), Some(64 << 20));
    assert_eq!(
        disks[1].child("backing").unwrap().child_text("fileName"),
        Some("[datastore1] web01/web01_1.vmdk")
    );
    let nics = devices(&hw, "VirtualVmxnet3");
    assert_eq!(nics.len(), 1);
    assert_eq!(
        nics[0].child("backing").unwrap().child_text("deviceName"),
        Some("VM Network")
    );
    assert!(
        nics[0]
            .child_text("macAddress")
            .unwrap()
            .starts_with("00:50:56:")
    );
    let extra = prop(vm, "config.extraConfig").unwrap();
    let opt = |k: &str| {
        extra
            .children_named("OptionValue")
            .find(|o| o.child_text("key") == Some(k))
            .map(|o| o.child("value").unwrap().clone())
    };
    let uuid_opt = opt("disk.EnableUUID").unwrap();
    assert_eq!(
        (uuid_opt.xsi_type.as_deref(), uuid_opt.text.as_str()),
        (Some("string"), "TRUE")
    );
    assert_eq!(opt("ctkEnabled").unwrap().text, "TRUE");

    // Paging: one object per page, then ContinueRetrievePropertiesEx.
    let args = format!(
        r#"<specSet><propSet><type>HostSystem</type><pathSet>name</pathSet></propSet><objectSet><obj type="ContainerView">{}</obj><skip>true</skip><selectSet xsi:type="TraversalSpec"><type>ContainerView</type><path>view</path></selectSet></objectSet></specSet><options><maxObjects>1</maxObjects></options>"#,
        escape(&view.value)
    );
    let first = c
        .ok(
            "RetrievePropertiesEx",
            ("PropertyCollector", "propertyCollector"),
            &args,
        )
        .await;
    let rv = first.child("returnval").unwrap();
    assert_eq!(rv.children_named("objects").count(), 1);
    let token = rv
        .child_text("token")
        .expect("token for the rest")
        .to_string();
    let rest = c
        .ok(
            "ContinueRetrievePropertiesEx",
            ("PropertyCollector", "propertyCollector"),
            &format!("<token>{token}</token>"),
        )
        .await;
    let rv = rest.child("returnval").unwrap();
    assert_eq!(rv.children_named("objects").count(), 1);
    assert!(rv.child("token").is_none());

    // govc-style traversal from the root folder down to the VMs.
    let args = r#"<specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet></propSet><objectSet><obj type="Folder">group-d1</obj><skip>false</skip>
        <selectSet xsi:type="TraversalSpec"><name>folderTraversal</name><type>Folder</type><path>childEntity</path><skip>false</skip>
          <selectSet><name>folderTraversal</name></selectSet><selectSet><name>dcToVm</name></selectSet></selectSet>
        <selectSet xsi:type="TraversalSpec"><name>dcToVm</name><type>Datacenter</type><path>vmFolder</path><skip>false</skip><selectSet><name>folderTraversal</name></selectSet></selectSet>
        </objectSet></specSet><options/>"#;
    let r = c
        .ok(
            "RetrievePropertiesEx",
            ("PropertyCollector", "propertyCollector"),
            args,
        )
        .await;
    let names: Vec<String> = r
        .child("returnval")
        .unwrap()
        .children_named("objects")
        .map(|o| {
            o.child("propSet")
                .unwrap()
                .child_text("val")
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, vec!["web01"]);

    let f = c
        .props(
            ("VirtualMachine", &vm_this(&l.lab, "web01").1),
            &["config.bogus", "nonsense"],
        )
        .await
        .unwrap_err();
    assert_eq!(f.kind, "InvalidProperty");
    let f = c
        .props(("VirtualMachine", "vm-9999"), &["name"])
        .await
        .unwrap_err();
    assert_eq!(f.kind, "ManagedObjectNotFound");
    assert_eq!(
        f.detail.child("obj").unwrap().as_moref().unwrap().value,
        "vm-9999"
    );

    // SearchIndex finds the VM again by uuid, inventory path and datastore path.
    let content = c.content().await;
    let si = content.child("searchIndex").unwrap().as_moref().unwrap();
    let si = (si.ty.as_str(), si.value.as_str());
    let web01 = l.lab.vm_ref("web01").unwrap();
    let uuid = prop(vm, "config.uuid").unwrap().text.to_uppercase();
    let found = |r: Element| r.child("returnval").and_then(Element::as_moref);
    let args = format!("<uuid>{uuid}</uuid><vmSearch>true</vmSearch>");
    assert_eq!(
        found(c.ok("FindByUuid", si, &args).await),
        Some(web01.clone())
    );
    let args =
        format!("<uuid>{uuid}</uuid><vmSearch>true</vmSearch><instanceUuid>true</instanceUuid>");
    assert_eq!(found(c.ok("FindByUuid", si, &args).await), None);
    let r = c
        .ok(
            "FindByInventoryPath",
            si,
            "<inventoryPath>dc1/vm/web01</inventoryPath>",
        )
        .await;
    assert_eq!(found(r), Some(web01.clone()));
    let r = c
        .ok(
            "FindByInventoryPath",
            si,
            "<inventoryPath>dc1/host/esx2.lab.local/esx2.lab.local</inventoryPath>",
        )
        .await;
    assert_eq!(found(r).unwrap().ty, "HostSystem");
    let r = c
        .ok(
            "FindByInventoryPath",
            si,
            "<inventoryPath>dc1/vm/nope</inventoryPath>",
        )
        .await;
    assert_eq!(found(r), None);
    let r = c
        .ok("FindByDatastorePath", si, r#"<datacenter type="Datacenter">datacenter-2</datacenter><path>[datastore1] web01/web01.vmx</path>"#)
        .await;
    assert_eq!(found(r), Some(web01));
}

fn create_vm_spec(name: &str, ds: &str, network: &str) -> String {
    format!(
        r#"<config><name>{name}</name><guestId>otherGuest64</guestId><files><vmPathName>[{ds}]</vmPathName></files><numCPUs>1</numCPUs><memoryMB>512</memoryMB>
        <deviceChange><operation>add</operation><device xsi:type="VirtualLsiLogicController"><key>-100</key><busNumber>0</busNumber><sharedBus>noSharing</sharedBus></device></deviceChange>
        <deviceChange><operation>add</operation><fileOperation>create</fileOperation><device xsi:type="VirtualDisk"><key>-101</key>
          <backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName></fileName><diskMode>persistent</diskMode><thinProvisioned>true</thinProvisioned></backing>
          <controllerKey>-100</controllerKey><unitNumber>0</unitNumber><capacityInKB>{}</capacityInKB></device></deviceChange>
        <deviceChange><operation>add</operation><device xsi:type="VirtualVmxnet3"><key>-102</key><backing xsi:type="VirtualEthernetCardNetworkBackingInfo"><deviceName>{network}</deviceName></backing><addressType>generated</addressType></device></deviceChange>
        </config>"#,
        16 * 1024
    )
}

async fn lifecycle(spec: &str, user: (&str, &str), can_clone: bool) {
    let l = lab(spec).await;
    let mut c = Client::new(&l.lab);
    c.login(user.0, user.1).await.unwrap();
    let content = c.content().await;
    let root = content.child("rootFolder").unwrap().as_moref().unwrap();
    let dc = c
        .prop((&root.ty, &root.value), "childEntity")
        .await
        .children[0]
        .as_moref()
        .unwrap();
    let vm_folder = c
        .prop(("Datacenter", &dc.value), "vmFolder")
        .await
        .as_moref()
        .unwrap();
    let vm_mgr = content.child("viewManager").unwrap().as_moref().unwrap();
    let args = format!(
        r#"<container type="Folder">{}</container><type>ResourcePool</type><recursive>true</recursive>"#,
        root.value
    );
    let view = c
        .ok("CreateContainerView", (&vm_mgr.ty, &vm_mgr.value), &args)
        .await
        .child("returnval")
        .unwrap()
        .as_moref()
        .unwrap();
    let pool = c
        .prop(("ContainerView", &view.value), "view")
        .await
        .children[0]
        .as_moref()
        .unwrap();

    // Create.
    let args = format!(
        r#"{}<pool type="ResourcePool">{}</pool>"#,
        create_vm_spec("new01", "datastore1", "VM Network"),
        pool.value
    );
    let info = c
        .task_ok("CreateVM_Task", ("Folder", &vm_folder.value), &args)
        .await;
    let result = info.child("result").unwrap();
    assert_eq!(result.xsi_type.as_deref(), Some("ManagedObjectReference"));
    let vm = result.as_moref().unwrap();
    assert_eq!(vm.ty, "VirtualMachine");
    let vmp = (vm.ty.as_str(), vm.value.as_str());
    let (desc, flat) = l.lab.disk_files("new01", 2000).unwrap();
    assert!(desc.ends_with("datastores/datastore1/new01/new01.vmdk") && flat.exists());
    assert!(
        l.lab
            .dir()
            .join("datastores/datastore1/new01/new01.vmx")
            .exists()
    );
    let again = c
        .task_err("CreateVM_Task", ("Folder", &vm_folder.value), &args)
        .await;
    assert_eq!(again, "DuplicateName");

    // Reconfigure: disk.EnableUUID, change tracking, and a second disk.
    let reconf = r#"<spec><changeTrackingEnabled>true</changeTrackingEnabled><extraConfig><key>disk.EnableUUID</key><value xsi:type="xsd:string">TRUE</value></extraConfig>
        <deviceChange><operation>add</operation><fileOperation>create</fileOperation><device xsi:type="VirtualDisk"><key>-1</key><backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>[datastore1]</fileName><diskMode>persistent</diskMode><thinProvisioned>true</thinProvisioned></backing><controllerKey>1000</controllerKey><unitNumber>1</unitNumber><capacityInBytes>8388608</capacityInBytes></device></deviceChange></spec>"#;
    c.task_ok("ReconfigVM_Task", vmp, reconf).await;
    let extra = c.prop(vmp, "config.extraConfig").await;
    let opt = |k: &str| {
        extra
            .children_named("OptionValue")
            .find(|o| o.child_text("key") == Some(k))
            .map(|o| o.child_text("value").unwrap().to_string())
    };
    assert_eq!(opt("disk.EnableUUID").as_deref(), Some("TRUE"));
    assert_eq!(opt("ctkEnabled").as_deref(), Some("TRUE"));
    assert_eq!(opt("scsi0:1.ctkEnabled").as_deref(), Some("TRUE"));
    assert_eq!(
        c.prop(vmp, "config.changeTrackingEnabled").await.text,
        "true"
    );
    let hw = c.prop(vmp, "config.hardware.device").await;
    let disks = devices(&hw, "VirtualDisk");
    assert_eq!(disks.len(), 2);
    assert_eq!(
        disks[1].child("backing").unwrap().child_text("fileName"),
        Some("[datastore1] new01/new01_1.vmdk")
    );
    let second = l.lab.disk_files("new01", 2001).unwrap().1;
    assert!(second.exists());
    // Creating over an existing file is refused.
    let clash = r#"<spec><deviceChange><operation>add</operation><fileOperation>create</fileOperation><device xsi:type="VirtualDisk"><key>-1</key><backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>[datastore1] new01/new01_1.vmdk</fileName><diskMode>persistent</diskMode></backing><controllerKey>1000</controllerKey><unitNumber>2</unitNumber><capacityInKB>1024</capacityInKB></device></deviceChange></spec>"#;
    assert_eq!(
        c.task_err("ReconfigVM_Task", vmp, clash).await,
        "FileAlreadyExists"
    );
    let remove = r#"<spec><deviceChange><operation>remove</operation><fileOperation>destroy</fileOperation><device xsi:type="VirtualDisk"><key>2001</key><controllerKey>1000</controllerKey><unitNumber>1</unitNumber><capacityInKB>8192</capacityInKB></device></deviceChange></spec>"#;
    c.task_ok("ReconfigVM_Task", vmp, remove).await;
    assert!(
        !second.exists(),
        "fileOperation destroy deletes the disk files"
    );

    // Grow a disk; shrinking is refused.
    let grow = |kb: u64| {
        format!(
            r#"<spec><deviceChange><operation>edit</operation><device xsi:type="VirtualDisk"><key>2000</key><controllerKey>1000</controllerKey><unitNumber>0</unitNumber><capacityInKB>{kb}</capacityInKB></device></deviceChange></spec>"#
        )
    };
    c.task_ok("ReconfigVM_Task", vmp, &grow(32 * 1024)).await;
    let hw = c.prop(vmp, "config.hardware.device").await;
    assert_eq!(
        devices(&hw, "VirtualDisk")[0].child_i64("capacityInBytes"),
        Some(32 << 20)
    );
    assert_eq!(std::fs::metadata(&flat).unwrap().len(), 32 << 20);
    assert_eq!(crate_vmdk_capacity(&desc), 32 << 20);
    assert_eq!(
        c.task_err("ReconfigVM_Task", vmp, &grow(8 * 1024)).await,
        "InvalidArgument"
    );

    // Clone: vCenter copies the running disks; a standalone host cannot clone.
    l.lab
        .seed_disk("new01", 2000, 3 << 20, &[0xC1; 4096])
        .unwrap();
    let clone_args = format!(
        r#"<folder type="Folder">{}</folder><name>new01-clone</name><spec><location/><template>false</template><powerOn>false</powerOn></spec>"#,
        vm_folder.value
    );
    if can_clone {
        let info = c.task_ok("CloneVM_Task", vmp, &clone_args).await;
        let clone = info.child("result").unwrap().as_moref().unwrap();
        assert_ne!(clone, vm);
        assert_eq!(
            c.prop((&clone.ty, &clone.value), "name").await.text,
            "new01-clone"
        );
        assert_eq!(
            l.lab.read_disk("new01-clone", 2000, 3 << 20, 4096).unwrap(),
            vec![0xC1; 4096]
        );
        let (clone_desc, _) = l.lab.disk_files("new01-clone", 2000).unwrap();
        assert!(clone_desc.ends_with("new01-clone/new01-clone.vmdk"));
    } else {
        assert_eq!(
            c.fault("CloneVM_Task", vmp, &clone_args).await.kind,
            "NotSupported"
        );
    }

    // Power.
    assert_eq!(
        c.fault("ShutdownGuest", vmp, "").await.kind,
        "InvalidPowerState"
    );
    c.task_ok("PowerOnVM_Task", vmp, "").await;
    assert_eq!(c.prop(vmp, "runtime.powerState").await.text, "poweredOn");
    let info = c.task("PowerOnVM_Task", vmp, "").await;
    let fault = info.child("error").unwrap().child("fault").unwrap();
    assert_eq!(fault.xsi_type.as_deref(), Some("InvalidPowerState"));
    assert_eq!(fault.child_text("existingState"), Some("poweredOn"));
    assert!(
        info.child("error")
            .unwrap()
            .child_text("localizedMessage")
            .is_some()
    );

    // Snapshots, quiesced and not.
    let snap1 = c.task_ok("CreateSnapshot_Task", vmp, "<name>app</name><description>app-consistent</description><memory>false</memory><quiesce>true</quiesce>").await;
    let snap1 = snap1.child("result").unwrap().as_moref().unwrap();
    assert_eq!(snap1.ty, "VirtualMachineSnapshot");
    let snap2 = c
        .task_ok(
            "CreateSnapshot_Task",
            vmp,
            "<name>crash</name><memory>false</memory><quiesce>false</quiesce>",
        )
        .await;
    let snap2 = snap2.child("result").unwrap().as_moref().unwrap();
    let tree = c.prop(vmp, "snapshot").await;
    assert_eq!(
        tree.child("currentSnapshot").unwrap().as_moref().unwrap(),
        snap2
    );
    let root_snap = tree.child("rootSnapshotList").unwrap();
    assert_eq!(root_snap.child_text("name"), Some("app"));
    assert_eq!(root_snap.child_text("quiesced"), Some("true"));
    let child = root_snap.child("childSnapshotList").unwrap();
    assert_eq!(child.child_text("name"), Some("crash"));
    assert_eq!(child.child_text("quiesced"), Some("false"));
    let running = devices(&c.prop(vmp, "config.hardware.device").await, "VirtualDisk")[0]
        .child("backing")
        .unwrap()
        .child_text("fileName")
        .unwrap()
        .to_string();
    assert_eq!(running, "[datastore1] new01/new01-000002.vmdk");
    c.task_ok(
        "RemoveSnapshot_Task",
        (&snap1.ty, &snap1.value),
        "<removeChildren>false</removeChildren>",
    )
    .await;
    c.task_ok(
        "RemoveSnapshot_Task",
        (&snap2.ty, &snap2.value),
        "<removeChildren>false</removeChildren>",
    )
    .await;
    assert!(
        c.props(vmp, &["snapshot"]).await.unwrap().is_empty(),
        "no snapshot left"
    );
    let running = devices(&c.prop(vmp, "config.hardware.device").await, "VirtualDisk")[0]
        .child("backing")
        .unwrap()
        .child_text("fileName")
        .unwrap()
        .to_string();
    assert_eq!(
        running, "[datastore1] new01/new01.vmdk",
        "consolidation returns to the base disk"
    );
    assert_eq!(
        c.fault(
            "RemoveSnapshot_Task",
            (&snap1.ty, &snap1.value),
            "<removeChildren>false</removeChildren>"
        )
        .await
        .kind,
        "ManagedObjectNotFound"
    );

    // Destroy needs the VM off, then deletes everything.
    assert_eq!(
        c.task_err("Destroy_Task", vmp, "").await,
        "InvalidPowerState"
    );
    c.task_ok("PowerOffVM_Task", vmp, "").await;
    c.task_ok("Destroy_Task", vmp, "").await;
    assert!(!l.lab.dir().join("datastores/datastore1/new01").exists());
    assert_eq!(
        c.props(vmp, &["name"]).await.unwrap_err().kind,
        "ManagedObjectNotFound"
    );
    assert_eq!(
        c.fault("PowerOnVM_Task", vmp, "").await.kind,
        "ManagedObjectNotFound"
    );
}

#[tokio::test]
async fn vm_lifecycle_on_vcenter() {
    lifecycle(VCENTER, ("administrator@vsphere.local", "Secret1!"), true).await;
}

#[tokio::test]
async fn vm_lifecycle_on_standalone_esxi() {
    lifecycle(&esxi("esxEnterprisePlus"), ("root", "esxroot"), false).await;
}

#[tokio::test]
async fn free_esxi_reports_its_edition_and_refuses_writes() {
    let l = lab(&esxi("esxBasic")).await;
    let mut c = Client::new(&l.lab);
    let content = c.content().await;
    let about = content.child("about").unwrap();
    assert_eq!(about.child_text("apiType"), Some("HostAgent"));
    assert_eq!(about.child_text("productLineId"), Some("embeddedEsx"));
    assert_eq!(
        content
            .child("rootFolder")
            .unwrap()
            .as_moref()
            .unwrap()
            .value,
        "ha-folder-root"
    );
    c.login("root", "esxroot").await.unwrap();
    let lm = content.child("licenseManager").unwrap().as_moref().unwrap();
    let lic = c.prop((&lm.ty, &lm.value), "licenses").await;
    assert_eq!(
        lic.xsi_type.as_deref(),
        Some("ArrayOfLicenseManagerLicenseInfo")
    );
    let infos: Vec<&Element> = lic.children_named("LicenseManagerLicenseInfo").collect();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].child_text("editionKey"), Some("esxBasic"));
    assert_eq!(infos[0].child_text("name"), Some("vSphere 8 Hypervisor"));
    let vm = vm_this(&l.lab, "mt01");
    assert_eq!(
        c.fault("PowerOnVM_Task", as_pair(&vm), "").await.kind,
        "RestrictedVersion"
    );
    assert_eq!(
        c.prop(as_pair(&vm), "runtime.powerState").await.text,
        "poweredOff",
        "reads still work"
    );
    let hw = c.prop(as_pair(&vm), "config.hardware.device").await;
    assert_eq!(
        devices(&hw, "VirtualDisk")[0]
            .child("deviceInfo")
            .unwrap()
            .child_text("summary"),
        Some("16,384 KB")
    );

    let tree = c.prop(as_pair(&vm), "snapshot").await;
    assert_eq!(
        tree.child("rootSnapshotList").unwrap().child_text("name"),
        Some("pre-failback")
    );
    assert_eq!(l.lab.snapshot_names("mt01").unwrap(), vec!["pre-failback"]);

    // Standalone hosts serve /folder under the ha-datacenter path; browsing is allowed.
    assert_eq!(l.lab.datacenter(), "ha-datacenter");
    let url = l.lab.folder_url("datastore1", "mt01/mt01.vmdk");
    assert!(url.contains("dcPath=ha-datacenter"));
    let r = reqwest::Client::new()
        .get(&url)
        .header(
            "Cookie",
            format!("vmware_soap_session={}", c.cookie.as_deref().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(r#"createType="vmfs""#));
}

#[tokio::test]
async fn vmdk_files_are_recognised_by_qemu_img() {
    let Ok(out) = std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
    else {
        println!("skipped: qemu-img is not on PATH");
        return;
    };
    assert!(out.status.success());
    let l = lab(VCENTER).await;
    let (desc, _) = l.lab.disk_files("web01", 2000).unwrap();
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    l.lab.guest_write("web01", 2000, 5 << 20, &pattern).unwrap();
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&desc)
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["format"], "vmdk");
    assert_eq!(v["virtual-size"], 64u64 << 20);
    assert_eq!(v["format-specific"]["data"]["create-type"], "vmfs");
    let extent = v["format-specific"]["data"]["extents"][0]["filename"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        extent.ends_with("datastores/datastore1/web01/web01-flat.vmdk"),
        "{extent}"
    );
    // qemu-img reads the guest's bytes back through the descriptor.
    let raw = l._dir.path().join("web01.raw");
    let conv = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "vmdk", "-O", "raw"])
        .arg(&desc)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        conv.status.success(),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );
    let bytes = std::fs::read(&raw).unwrap();
    assert_eq!(&bytes[5 << 20..(5 << 20) + 4096], &pattern[..]);
}

#[tokio::test]
async fn changed_disk_areas_cover_exactly_what_was_written() {
    let l = lab(VCENTER).await;
    let mut c = Client::new(&l.lab);
    c.login("administrator@vsphere.local", "Secret1!")
        .await
        .unwrap();
    let vm = vm_this(&l.lab, "web01");
    let vmp = as_pair(&vm);

    let base = c
        .task_ok(
            "CreateSnapshot_Task",
            vmp,
            "<name>base</name><memory>false</memory><quiesce>false</quiesce>",
        )
        .await;
    let base = base.child("result").unwrap().as_moref().unwrap();
    let hw = c
        .prop(
            ("VirtualMachineSnapshot", &base.value),
            "config.hardware.device",
        )
        .await;
    let base_change = disk_change_id(&hw, 0);

    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    l.lab.guest_write("web01", 2000, 1 << 20, &data).unwrap();
    l.lab
        .guest_write_zeros("web01", 2000, 10 << 20, 512)
        .unwrap();
    l.lab
        .guest_write("web01", 2000, (20 << 20) + 512, &[0xAB; 1024])
        .unwrap();
    l.lab.guest_write("web01", 2001, 0, &[1; 512]).unwrap();

    let next = c
        .task_ok(
            "CreateSnapshot_Task",
            vmp,
            "<name>next</name><memory>false</memory><quiesce>true</quiesce>",
        )
        .await;
    let next = next.child("result").unwrap().as_moref().unwrap();
    // Written after the second snapshot: must not show up in its changes.
    l.lab
        .guest_write("web01", 2000, 30 << 20, &[9; 512])
        .unwrap();

    let q = |change: &str, key: i32, start: u64| {
        format!(
            r#"<snapshot type="VirtualMachineSnapshot">{}</snapshot><deviceKey>{key}</deviceKey><startOffset>{start}</startOffset><changeId>{}</changeId>"#,
            next.value,
            escape(change)
        )
    };
    let r = c
        .ok("QueryChangedDiskAreas", vmp, &q(&base_change, 2000, 0))
        .await;
    assert_eq!(
        changed_areas(&r),
        vec![(1 << 20, 4096), (10 << 20, 512), ((20 << 20) + 512, 1024)]
    );
    let rv = r.child("returnval").unwrap();
    assert_eq!(rv.child_i64("startOffset"), Some(0));
    assert_eq!(rv.child_i64("length"), Some(64 << 20));
    let r = c
        .ok(
            "QueryChangedDiskAreas",
            vmp,
            &q(&base_change, 2000, 8 << 20),
        )
        .await;
    assert_eq!(
        changed_areas(&r),
        vec![(10 << 20, 512), ((20 << 20) + 512, 1024)],
        "startOffset skips earlier extents"
    );

    // "*": everything allocated at the snapshot, sparse.
    let r = c.ok("QueryChangedDiskAreas", vmp, &q("*", 2000, 0)).await;
    let all = changed_areas(&r);
    for (s, len) in [
        (1u64 << 20, 4096u64),
        (10 << 20, 512),
        ((20 << 20) + 512, 1024),
    ] {
        assert!(
            all.iter().any(|&(a, l)| a <= s && a + l >= s + len),
            "{s} not covered by {all:?}"
        );
    }
    assert!(
        !all.iter().any(|&(a, l)| a <= 30 << 20 && a + l > 30 << 20),
        "later write leaked into the snapshot: {all:?}"
    );
    assert!(
        all.iter().map(|a| a.1).sum::<u64>() < 64 << 20,
        "allocation must be sparse"
    );

    // The next snapshot's own change id, read back from it, yields nothing new for it.
    let hw = c
        .prop(
            ("VirtualMachineSnapshot", &next.value),
            "config.hardware.device",
        )
        .await;
    let next_change = disk_change_id(&hw, 0);
    let r = c
        .ok("QueryChangedDiskAreas", vmp, &q(&next_change, 2000, 0))
        .await;
    assert!(changed_areas(&r).is_empty());
    // Each disk tracks its own changes under its own change ids.
    let base_hw = c
        .prop(
            ("VirtualMachineSnapshot", &base.value),
            "config.hardware.device",
        )
        .await;
    let second_change = disk_change_id(&base_hw, 1);
    let r = c
        .ok("QueryChangedDiskAreas", vmp, &q(&second_change, 2001, 0))
        .await;
    assert_eq!(changed_areas(&r), vec![(0, 512)]);

    let f = c
        .fault(
            "QueryChangedDiskAreas",
            vmp,
            &q("52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1", 2000, 0),
        )
        .await;
    assert_eq!(f.kind, "InvalidArgument");
    assert_eq!(f.detail.child_text("invalidProperty"), Some("changeId"));
    let no_snap = format!(
        "<deviceKey>2000</deviceKey><startOffset>0</startOffset><changeId>{}</changeId>",
        escape(&base_change)
    );
    assert_eq!(
        c.fault("QueryChangedDiskAreas", vmp, &no_snap).await.kind,
        "FileFault",
        "a running VM is queried through a snapshot"
    );

    // The snapshot's frozen disk holds the point-in-time bytes, readable through /folder.
    let frozen = devices(&hw, "VirtualDisk")[0]
        .child("backing")
        .unwrap()
        .child_text("fileName")
        .unwrap()
        .to_string();
    assert_eq!(frozen, "[datastore1] web01/web01-000001.vmdk");
    let url = l
        .lab
        .folder_url("datastore1", "web01/web01-000001-flat.vmdk");
    let resp = reqwest::Client::new()
        .get(&url)
        .header(
            "Cookie",
            format!("vmware_soap_session={}", c.cookie.as_deref().unwrap()),
        )
        .header("Range", format!("bytes={}-{}", 1 << 20, (1 << 20) + 4095))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);
    let later = reqwest::Client::new()
        .get(&url)
        .header(
            "Cookie",
            format!("vmware_soap_session={}", c.cookie.as_deref().unwrap()),
        )
        .header("Range", format!("bytes={}-{}", 30 << 20, (30 << 20) + 511))
        .send()
        .await
        .unwrap();
    assert_eq!(
        later.bytes().await.unwrap().as_ref(),
        &[0u8; 512][..],
        "the frozen disk does not see later writes"
    );
    let r = reqwest::Client::new()
        .put(&url)
        .header(
            "Cookie",
            format!("vmware_soap_session={}", c.cookie.as_deref().unwrap()),
        )
        .header("Content-Range", format!("bytes 0-511/{}", 64u64 << 20))
        .body(vec![7u8; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "a snapshot's frozen extent cannot be written"
    );

    // Removing every snapshot consolidates into the base files and keeps the data.
    c.task_ok("RemoveAllSnapshots_Task", vmp, "").await;
    let (desc, _) = l.lab.disk_files("web01", 2000).unwrap();
    assert!(desc.ends_with("web01/web01.vmdk"));
    assert_eq!(
        l.lab.read_disk("web01", 2000, 30 << 20, 512).unwrap(),
        vec![9u8; 512]
    );
    assert_eq!(l.lab.read_disk("web01", 2000, 1 << 20, 4096).unwrap(), data);
    assert!(
        !l.lab
            .dir()
            .join("datastores/datastore1/web01/web01-000001.vmdk")
            .exists()
    );

    // Turning tracking off and on starts a new epoch: old change ids are refused.
    let snap = async |name: &str| {
        let args = format!("<name>{name}</name><memory>false</memory><quiesce>false</quiesce>");
        let info = c.task_ok("CreateSnapshot_Task", vmp, &args).await;
        info.child("result").unwrap().as_moref().unwrap()
    };
    let old = snap("before-reset").await;
    let set_ctk =
        |on: bool| format!("<spec><changeTrackingEnabled>{on}</changeTrackingEnabled></spec>");
    c.task_ok("ReconfigVM_Task", vmp, &set_ctk(false)).await;
    c.task_ok("ReconfigVM_Task", vmp, &set_ctk(true)).await;
    let fresh_snap = snap("after-reset").await;
    let query = |snapshot: &str, change: &str| {
        format!(
            r#"<snapshot type="VirtualMachineSnapshot">{snapshot}</snapshot><deviceKey>2000</deviceKey><startOffset>0</startOffset><changeId>{}</changeId>"#,
            escape(change)
        )
    };
    let f = c
        .fault(
            "QueryChangedDiskAreas",
            vmp,
            &query(&fresh_snap.value, &base_change),
        )
        .await;
    assert_eq!(f.kind, "InvalidArgument");
    let hw = c
        .prop(
            ("VirtualMachineSnapshot", &fresh_snap.value),
            "config.hardware.device",
        )
        .await;
    let fresh = disk_change_id(&hw, 0);
    assert!(
        !fresh.starts_with(base_change.split('/').next().unwrap()),
        "a reset starts a new epoch"
    );
    let r = c
        .ok(
            "QueryChangedDiskAreas",
            vmp,
            &query(&fresh_snap.value, &fresh),
        )
        .await;
    assert!(changed_areas(&r).is_empty());
    // A snapshot from before the reset cannot bound a query in the new epoch.
    let f = c
        .fault("QueryChangedDiskAreas", vmp, &query(&old.value, &fresh))
        .await;
    assert_eq!(f.kind, "FileFault");
}

#[tokio::test]
async fn folder_reads_and_writes_ranges_and_feeds_change_tracking() {
    let l = lab(VCENTER).await;
    let mut c = Client::new(&l.lab);
    c.login("administrator@vsphere.local", "Secret1!")
        .await
        .unwrap();
    let cookie = format!("vmware_soap_session={}", c.cookie.clone().unwrap());
    let http = reqwest::Client::new();

    // Whole-file PUT then ranged GET.
    let url = l.lab.folder_url("datastore1", "iso/blob.bin");
    let content: Vec<u8> = (0..10_000u32).map(|i| (i % 256) as u8).collect();
    let r = http
        .put(&url)
        .header("Cookie", &cookie)
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .get(&url)
        .header("Cookie", &cookie)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &content[100..200]);
    let r = http
        .get(&url)
        .header("Cookie", &cookie)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &content[9990..]);
    let r = http
        .get(&url)
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 10_000);
    let r = http
        .get(&url)
        .header("Cookie", &cookie)
        .header("Range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    let r = http
        .put(&url)
        .header("Cookie", &cookie)
        .header("Content-Range", "bytes 0-3/10000")
        .body(vec![0xEE; 4])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(&url)
        .header("Cookie", &cookie)
        .header("Range", "bytes=0-4")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &[0xEE, 0xEE, 0xEE, 0xEE, 4]
    );

    // Access rules.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(l.lab.folder_url("nope", "iso/blob.bin"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(l.lab.folder_url("datastore1", "iso/missing"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .get(&url)
        .basic_auth("administrator@vsphere.local", Some("Secret1!"))
        .header("Range", "bytes=5-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &[5u8]);

    // A ranged PUT into a powered-off VM's flat extent is a change for CBT.
    c.task_ok("PowerOffVM_Task", as_pair(&vm_this(&l.lab, "web01")), "")
        .await;
    let vmp = vm_this(&l.lab, "web01");
    let hw = c.prop(as_pair(&vmp), "config.hardware.device").await;
    let change = disk_change_id(&hw, 0);
    let disk_url = l.lab.folder_url("datastore1", "web01/web01-flat.vmdk");
    let total = 64u64 << 20;
    let r = http
        .put(&disk_url)
        .header("Cookie", &cookie)
        .header(
            "Content-Range",
            format!("bytes {}-{}/{total}", 4 << 20, (4 << 20) + 8191),
        )
        .body(vec![0x5A; 8192])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        l.lab.read_disk("web01", 2000, 4 << 20, 8192).unwrap(),
        vec![0x5A; 8192]
    );
    let args = format!(
        "<deviceKey>2000</deviceKey><startOffset>0</startOffset><changeId>{}</changeId>",
        escape(&change)
    );
    let r = c.ok("QueryChangedDiskAreas", as_pair(&vmp), &args).await;
    assert_eq!(changed_areas(&r), vec![(4 << 20, 8192)]);
    let r = http
        .put(&disk_url)
        .header("Cookie", &cookie)
        .header("Content-Range", "bytes 0-9/100")
        .body(vec![1; 4])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "a body shorter than its Content-Range is refused"
    );
    // Registered disks are locked against whole rewrites and descriptor edits.
    let r = http
        .put(&disk_url)
        .header("Cookie", &cookie)
        .body(vec![0; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = http
        .put(l.lab.folder_url("datastore1", "web01/web01.vmdk"))
        .header("Cookie", &cookie)
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        std::fs::metadata(l.lab.disk_files("web01", 2000).unwrap().1)
            .unwrap()
            .len(),
        total
    );

    // A disk uploaded through /folder (a replica seed) is attached to a VM as an existing disk.
    let replica_desc = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 2048 FLAT \"replica-flat.vmdk\" 0\n";
    let seed: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    for (file, body) in [
        ("replica/replica.vmdk", replica_desc.as_bytes().to_vec()),
        ("replica/replica-flat.vmdk", seed.clone()),
    ] {
        let r = http
            .put(l.lab.folder_url("datastore1", file))
            .header("Cookie", &cookie)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let attach = |path: &str, unit: i32| {
        format!(
            r#"<spec><deviceChange><operation>add</operation><device xsi:type="VirtualDisk"><key>-1</key><backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>{path}</fileName><diskMode>persistent</diskMode></backing><controllerKey>1000</controllerKey><unitNumber>{unit}</unitNumber></device></deviceChange></spec>"#
        )
    };
    c.task_ok(
        "ReconfigVM_Task",
        as_pair(&vmp),
        &attach("[datastore1] replica/replica.vmdk", 5),
    )
    .await;
    let hw = c.prop(as_pair(&vmp), "config.hardware.device").await;
    let disks = devices(&hw, "VirtualDisk");
    assert_eq!(disks.len(), 3);
    assert_eq!(disks[2].child_i64("capacityInBytes"), Some(1 << 20));
    assert_eq!(disks[2].child_i64("key"), Some(2005));
    assert_eq!(
        l.lab.read_disk("web01", 2005, 4096, 4096).unwrap(),
        &seed[4096..8192]
    );
    let err = c
        .task_err(
            "ReconfigVM_Task",
            as_pair(&vmp),
            &attach("[datastore1] replica/replica.vmdk", 6),
        )
        .await;
    assert_eq!(
        err, "FileFault",
        "a disk already attached cannot be attached twice"
    );
    let err = c
        .task_err(
            "ReconfigVM_Task",
            as_pair(&vmp),
            &attach("[datastore1] replica/missing.vmdk", 6),
        )
        .await;
    assert_eq!(err, "FileNotFound");
}

#[tokio::test]
async fn read_only_user_cannot_browse_datastores_or_change_vms() {
    let l = lab(VCENTER).await;
    let mut admin = Client::new(&l.lab);
    admin
        .login("administrator@vsphere.local", "Secret1!")
        .await
        .unwrap();
    let mut ro = Client::new(&l.lab);
    let ro_creds = l.lab.user("auditor@vsphere.local").unwrap();
    ro.login(&ro_creds.user, &ro_creds.password).await.unwrap();
    let ds = l.lab.datastore_ref("datastore1").unwrap();

    let check = |sid: &str| {
        format!(
            r#"<entity type="Datastore">{}</entity><sessionId>{sid}</sessionId><privId>Datastore.Browse</privId><privId>System.Read</privId>"#,
            ds.value
        )
    };
    let r = admin
        .ok(
            "HasPrivilegeOnEntities",
            ("AuthorizationManager", "AuthorizationManager"),
            &check(ro.cookie.as_deref().unwrap()),
        )
        .await;
    let ep = r.child("returnval").unwrap();
    assert_eq!(ep.child("entity").unwrap().as_moref().unwrap(), ds);
    let granted: Vec<(String, String)> = ep
        .children_named("privAvailability")
        .map(|p| {
            (
                p.child_text("privId").unwrap().into(),
                p.child_text("isGranted").unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        granted,
        vec![
            ("Datastore.Browse".into(), "false".into()),
            ("System.Read".into(), "true".into())
        ]
    );
    let r = admin
        .ok(
            "HasPrivilegeOnEntities",
            ("AuthorizationManager", "AuthorizationManager"),
            &check(admin.cookie.as_deref().unwrap()),
        )
        .await;
    assert!(
        r.child("returnval")
            .unwrap()
            .children_named("privAvailability")
            .all(|p| p.child_text("isGranted") == Some("true"))
    );

    // The read-only user sees inventory but cannot browse or act.
    assert_eq!(
        ro.prop(("Datastore", &ds.value), "name").await.text,
        "datastore1"
    );
    let url = l.lab.folder_url("datastore1", "web01/web01.vmx");
    let r = reqwest::Client::new()
        .get(&url)
        .header(
            "Cookie",
            format!("vmware_soap_session={}", ro.cookie.as_deref().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = reqwest::Client::new()
        .get(&url)
        .header(
            "Cookie",
            format!("vmware_soap_session={}", admin.cookie.as_deref().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("displayName = \"web01\""));
    let vm = vm_this(&l.lab, "web01");
    let f = ro.fault("PowerOffVM_Task", as_pair(&vm), "").await;
    assert_eq!(f.kind, "NoPermission");
    assert_eq!(
        f.detail.child_text("privilegeId"),
        Some("VirtualMachine.Interact.PowerOff")
    );
}

#[tokio::test]
async fn injected_faults_latency_drops_full_datastore_and_busy_tasks() {
    let l = lab(VCENTER).await;
    let mut c = Client::new(&l.lab);
    c.login("administrator@vsphere.local", "Secret1!")
        .await
        .unwrap();
    let vm = vm_this(&l.lab, "web01");
    let vmp = as_pair(&vm);

    // A SOAP fault for the next two calls of one method only.
    l.lab.inject_fault(
        "PowerOffVM_Task",
        2,
        Fault::system_error("simulated hostd restart"),
    );
    for _ in 0..2 {
        let f = c.fault("PowerOffVM_Task", vmp, "").await;
        assert_eq!(f.kind, "SystemError");
        assert_eq!(
            f.detail.child_text("reason"),
            Some("simulated hostd restart")
        );
    }
    assert_eq!(c.prop(vmp, "name").await.text, "web01");
    c.task_ok("PowerOffVM_Task", vmp, "").await;

    // A dropped connection, then service as usual.
    l.lab.drop_connections(Some("RetrievePropertiesEx"), 1);
    let err = c
        .raw(
            "RetrievePropertiesEx",
            ("PropertyCollector", "propertyCollector"),
            "<specSet/>",
        )
        .await
        .unwrap_err();
    assert!(
        !err.is_status() && !err.is_timeout(),
        "expected a cut connection, got {err}"
    );
    assert_eq!(c.prop(vmp, "name").await.text, "web01");

    // Latency past the caller's deadline.
    l.lab
        .inject_latency(Some("CurrentTime"), Duration::from_secs(5));
    let impatient = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_millis(100))
            .build()
            .unwrap(),
        url: l.lab.sdk_url(),
        cookie: c.cookie.clone(),
    };
    let err = impatient
        .raw("CurrentTime", ("ServiceInstance", "ServiceInstance"), "")
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    l.lab.clear_injections();
    c.ok("CurrentTime", ("ServiceInstance", "ServiceInstance"), "")
        .await;

    // A task that fails after it was accepted, e.g. a quiesce failure in the guest.
    l.lab.inject_task_error(
        "CreateSnapshot_Task",
        1,
        Fault::new(
            "ApplicationQuiesceFault",
            "An error occurred while quiescing the virtual machine.",
        ),
    );
    let failed = c
        .task_err(
            "CreateSnapshot_Task",
            vmp,
            "<name>q</name><memory>false</memory><quiesce>true</quiesce>",
        )
        .await;
    assert_eq!(failed, "ApplicationQuiesceFault");
    assert!(
        l.lab.snapshot_names("web01").unwrap().is_empty(),
        "a failed task changes nothing"
    );

    // A datastore running full.
    l.lab.set_datastore_full("datastore1", true).unwrap();
    let ds = l.lab.datastore_ref("datastore1").unwrap();
    assert_eq!(
        c.prop(("Datastore", &ds.value), "summary.freeSpace")
            .await
            .text,
        "0"
    );
    assert_eq!(
        c.task_err(
            "CreateSnapshot_Task",
            vmp,
            "<name>s</name><memory>false</memory><quiesce>false</quiesce>"
        )
        .await,
        "NoDiskSpace"
    );
    let cookie = format!("vmware_soap_session={}", c.cookie.clone().unwrap());
    let r = reqwest::Client::new()
        .put(l.lab.folder_url("datastore1", "x.bin"))
        .header("Cookie", &cookie)
        .body(vec![1u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    c.task_ok("PowerOnVM_Task", vmp, "").await;
    match l.lab.guest_write("web01", 2000, 0, &[1; 512]) {
        Err(LabError::Fault(f)) => assert_eq!(f.kind, "NoDiskSpace"),
        other => panic!("expected NoDiskSpace, got {other:?}"),
    }
    l.lab.set_datastore_full("datastore1", false).unwrap();
    l.lab.guest_write("web01", 2000, 0, &[1; 512]).unwrap();

    // A datastore filling up as the guest writes.
    l.lab
        .limit_datastore_free_space("datastore1", 256 << 10)
        .unwrap();
    l.lab
        .guest_write("web01", 2000, 2 << 20, &[4; 4096])
        .unwrap();
    match l
        .lab
        .guest_write("web01", 2000, 40 << 20, &vec![5; 1 << 20])
    {
        Err(LabError::Fault(f)) => assert_eq!(f.kind, "NoDiskSpace"),
        other => panic!("expected NoDiskSpace, got {other:?}"),
    }
    l.lab
        .limit_datastore_free_space("datastore1", 1 << 30)
        .unwrap();

    // Guest writes need a running guest; seeding does not.
    l.lab.set_power("web01", false).unwrap();
    assert!(matches!(
        l.lab.guest_write("web01", 2000, 0, &[2; 512]),
        Err(LabError::PoweredOff(_))
    ));
    l.lab.seed_disk("web01", 2000, 512, &[3; 512]).unwrap();
    assert_eq!(
        l.lab.read_disk("web01", 2000, 0, 1024).unwrap(),
        [[1u8; 512], [3u8; 512]].concat()
    );
    l.lab.set_power("web01", true).unwrap();

    // A task holding the VM makes a second one fail with TaskInProgress.
    l.lab.hold_tasks();
    let r = c.ok("PowerOffVM_Task", vmp, "").await;
    let task = r.child("returnval").unwrap().as_moref().unwrap();
    assert_eq!(
        c.prop(("Task", &task.value), "info")
            .await
            .child_text("state"),
        Some("queued")
    );
    let f = c
        .fault(
            "CreateSnapshot_Task",
            vmp,
            "<name>s</name><memory>false</memory><quiesce>false</quiesce>",
        )
        .await;
    assert_eq!(f.kind, "TaskInProgress");
    assert_eq!(f.detail.child("task").unwrap().as_moref().unwrap(), task);
    l.lab.release_tasks();
    assert_eq!(
        c.wait(&task.value).await.child_text("state"),
        Some("success")
    );
    assert!(!l.lab.is_powered_on("web01").unwrap());

    // A task held running reports `running` until released.
    l.lab.set_task_gate(TaskGate::HoldRunning);
    let r = c.ok("PowerOnVM_Task", vmp, "").await;
    let task = r.child("returnval").unwrap().as_moref().unwrap();
    let mut state = String::new();
    for _ in 0..500 {
        state = c
            .prop(("Task", &task.value), "info")
            .await
            .child_text("state")
            .unwrap()
            .to_string();
        if state != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state, "running");
    assert!(
        c.prop(("Task", &task.value), "info")
            .await
            .child("startTime")
            .is_some()
    );
    assert!(
        !l.lab.is_powered_on("web01").unwrap(),
        "a running task has not applied its change yet"
    );
    l.lab.set_task_gate(TaskGate::Open);
    assert_eq!(
        c.wait(&task.value).await.child_text("state"),
        Some("success")
    );
    assert!(l.lab.is_powered_on("web01").unwrap());
}

#[tokio::test]
async fn shutdown_closes_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let lab = VsphereLab::from_toml(VCENTER, dir.path()).await.unwrap();
    let url = lab.sdk_url();
    let c = Client {
        http: reqwest::Client::new(),
        url: url.clone(),
        cookie: None,
    };
    c.content().await;
    lab.shutdown().await;
    assert!(
        c.raw(
            "RetrieveServiceContent",
            ("ServiceInstance", "ServiceInstance"),
            ""
        )
        .await
        .is_err()
    );

    let lab = VsphereLab::from_toml(VCENTER, dir.path().join("second"))
        .await
        .unwrap();
    let c = Client {
        http: reqwest::Client::new(),
        url: lab.sdk_url(),
        cookie: None,
    };
    c.content().await;
    drop(lab);
    assert!(
        c.raw(
            "RetrieveServiceContent",
            ("ServiceInstance", "ServiceInstance"),
            ""
        )
        .await
        .is_err(),
        "Drop stops the server too"
    );
}

#[tokio::test]
async fn bad_descriptions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let two_esxi = r#"mode = "esxi"
hosts = [{ name = "a" }, { name = "b" }]
users = [{ name = "root", password = "x" }]"#;
    assert!(matches!(
        VsphereLab::from_toml(two_esxi, dir.path()).await,
        Err(LabError::InvalidSpec(_))
    ));
    let unknown_host = r#"hosts = [{ name = "a" }]
datastores = [{ name = "d", capacity_gib = 1, hosts = ["b"] }]
users = [{ name = "u", password = "x" }]"#;
    assert!(matches!(
        VsphereLab::from_toml(unknown_host, dir.path()).await,
        Err(LabError::InvalidSpec(_))
    ));
    assert!(matches!(
        VsphereLab::from_toml("hosts = 3", dir.path()).await,
        Err(LabError::Toml(_))
    ));
    let twice = r#"hosts = [{ name = "a" }]
datastores = [{ name = "d", capacity_gib = 1 }, { name = "d", capacity_gib = 2 }]
users = [{ name = "u", password = "x" }]"#;
    match VsphereLab::from_toml(twice, dir.path()).await {
        Err(LabError::InvalidSpec(m)) => assert!(m.contains("datastore 'd'"), "{m}"),
        other => panic!("expected InvalidSpec, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn tasks_can_be_awaited_with_property_filters() {
    let l = lab(VCENTER).await;
    let mut c = Client::new(&l.lab);
    c.login("administrator@vsphere.local", "Secret1!")
        .await
        .unwrap();
    let vm = vm_this(&l.lab, "web01");
    let pc = ("PropertyCollector", "propertyCollector");

    l.lab.set_task_gate(TaskGate::HoldRunning);
    let r = c.ok("PowerOffVM_Task", as_pair(&vm), "").await;
    let task = r.child("returnval").unwrap().as_moref().unwrap();
    let spec = format!(
        r#"<spec><propSet><type>Task</type><pathSet>info.state</pathSet></propSet><objectSet><obj type="Task">{}</obj></objectSet></spec><partialUpdates>false</partialUpdates>"#,
        task.value
    );
    let filter = c.ok("CreateFilter", pc, &spec).await;
    let filter = filter.child("returnval").unwrap().as_moref().unwrap();
    assert_eq!(filter.ty, "PropertyFilter");

    // Each wait blocks until the task's state changes; collect what the client is told.
    let mut version = String::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    let wait = async |version: &mut String| -> Vec<(String, String)> {
        let args = format!(
            "<version>{version}</version><options><maxWaitSeconds>30</maxWaitSeconds></options>"
        );
        let r = c.ok("WaitForUpdatesEx", pc, &args).await;
        let set = r.child("returnval").expect("an update set");
        *version = set.child_text("version").unwrap().to_string();
        let fs = set.child("filterSet").unwrap();
        assert_eq!(fs.child("filter").unwrap().as_moref().unwrap(), filter);
        fs.children_named("objectSet")
            .map(|o| {
                assert_eq!(o.child("obj").unwrap().as_moref().unwrap(), task);
                let change = o.child("changeSet").unwrap();
                assert_eq!(change.child_text("name"), Some("info.state"));
                assert_eq!(change.child_text("op"), Some("assign"));
                (
                    o.child_text("kind").unwrap().to_string(),
                    change.child_text("val").unwrap().to_string(),
                )
            })
            .collect()
    };
    while !seen.iter().any(|(_, s)| s == "running") {
        assert!(seen.len() < 3, "the task never reported running: {seen:?}");
        seen.extend(wait(&mut version).await);
    }
    assert_eq!(seen[0].0, "enter");
    l.lab.set_task_gate(TaskGate::Open);
    let last = wait(&mut version).await;
    assert_eq!(last, vec![("modify".to_string(), "success".to_string())]);

    // Nothing changes any more: a non-blocking check returns no update set.
    let r = c
        .ok(
            "CheckForUpdates",
            pc,
            &format!("<version>{version}</version>"),
        )
        .await;
    assert!(r.child("returnval").is_none());
    c.ok(
        "DestroyPropertyFilter",
        ("PropertyFilter", &filter.value),
        "",
    )
    .await;
    let r = c
        .ok(
            "WaitForUpdatesEx",
            pc,
            "<version></version><options><maxWaitSeconds>0</maxWaitSeconds></options>",
        )
        .await;
    assert!(
        r.child("returnval").is_none(),
        "a destroyed filter reports nothing"
    );
}

#[tokio::test]
async fn datastores_are_only_usable_from_hosts_that_mount_them() {
    let l = lab(VCENTER).await;
    let mut c = Client::new(&l.lab);
    c.login("administrator@vsphere.local", "Secret1!")
        .await
        .unwrap();
    let view = c
        .ok(
            "CreateContainerView",
            ("ViewManager", "ViewManager"),
            r#"<container type="Folder">group-d1</container><type>HostSystem</type><recursive>true</recursive>"#,
        )
        .await;
    let view = view.child("returnval").unwrap().as_moref().unwrap();
    let mut esx2 = None;
    for h in c
        .prop(("ContainerView", &view.value), "view")
        .await
        .children
    {
        let h = h.as_moref().unwrap();
        if c.prop((&h.ty, &h.value), "name").await.text == "esx2.lab.local" {
            esx2 = Some(h);
        }
    }
    let esx2 = esx2.expect("esx2 listed");
    let pool = c
        .prop((&esx2.ty, &esx2.value), "parent")
        .await
        .as_moref()
        .unwrap();
    let pool = c
        .prop((&pool.ty, &pool.value), "resourcePool")
        .await
        .as_moref()
        .unwrap();
    let stores = c.prop((&esx2.ty, &esx2.value), "datastore").await;
    assert_eq!(stores.children.len(), 1, "esx2 does not mount local-esx1");

    let args = format!(
        r#"{}<pool type="ResourcePool">{}</pool><host type="HostSystem">{}</host>"#,
        create_vm_spec("mt02", "local-esx1", "VM Network"),
        pool.value,
        esx2.value
    );
    let fault = c
        .task_err("CreateVM_Task", ("Folder", "group-v3"), &args)
        .await;
    assert_eq!(fault, "InvalidDatastore");
    assert!(l.lab.vm_ref("mt02").is_none());
    let args = format!(
        r#"{}<pool type="ResourcePool">{}</pool><host type="HostSystem">{}</host>"#,
        create_vm_spec("mt02", "datastore1", "VM Network"),
        pool.value,
        esx2.value
    );
    c.task_ok("CreateVM_Task", ("Folder", "group-v3"), &args)
        .await;
    assert_eq!(
        c.prop(as_pair(&vm_this(&l.lab, "mt02")), "runtime.host")
            .await
            .as_moref()
            .unwrap(),
        esx2
    );
}
