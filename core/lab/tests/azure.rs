//! Drives the simulated Azure site over real HTTP with the request shapes real clients send.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use homeward_lab::azure::blob::sas::{SasParams, canonical_blob};
use homeward_lab::azure::blob::shared_key;
use homeward_lab::azure::{AzureLab, AzureLabConfig, DiskId, Fault, LroPolicy, Service};
use homeward_lab::vhd::VhdFooter;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const SUB: &str = "2f0c6e7a-1111-4222-8333-944445555666";
const API: &str = "api-version=2024-07-01";
const XMS: &str = "2021-08-06";
const CLASSIC_VERSION: &str = "2015-04-01";

const SPEC: &str = r#"
[[subscriptions]]
id = "2f0c6e7a-1111-4222-8333-944445555666"
name = "DR"

[[subscriptions.resource_groups]]
name = "rg-dr"
location = "westeurope"

[[subscriptions.resource_groups.virtual_networks]]
name = "vnet-dr"
address_prefixes = ["10.10.0.0/16"]
subnets = [{ name = "default", address_prefix = "10.10.1.0/24" }]

[[subscriptions.resource_groups.vms]]
name = "web01"
network = "vnet-dr"
subnet = "default"
os_disk_mib = 16
data_disks_mib = [8]

[[subscriptions.classic.virtual_networks]]
name = "classic-vnet"
location = "West Europe"
address_prefixes = ["10.20.0.0/16"]
subnets = [{ name = "Subnet-1", address_prefix = "10.20.1.0/24" }]

[[subscriptions.classic.vms]]
service = "legacy-svc"
name = "app01"
network = "classic-vnet"
subnet = "Subnet-1"
os_disk_mib = 16
data_disks_mib = [8]
"#;

/// Operations need two polls, so every test sees `InProgress` before the outcome.
fn config() -> AzureLabConfig {
    AzureLabConfig { lro: LroPolicy { polls: 2, min_duration: Duration::ZERO, retry_after_secs: 0 }, ..Default::default() }
}

fn lab() -> AzureLab {
    AzureLab::start_with_toml(config(), SPEC).expect("lab starts")
}

// ---------- token and Resource Manager helpers ----------

async fn token(c: &Client, lab: &AzureLab) -> String {
    let cred = lab.credentials();
    let resp = c
        .post(lab.endpoints().token_url(&cred.tenant_id))
        .form(&[("grant_type", "client_credentials"), ("client_id", &cred.client_id), ("client_secret", &cred.client_secret), ("scope", &cred.scope)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    body["access_token"].as_str().unwrap().to_string()
}

struct Arm<'a> {
    c: Client,
    lab: &'a AzureLab,
    token: String,
}

impl Arm<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, HeaderMap, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{sep}{API}", self.lab.endpoints().resource_manager);
        self.raw(method, &url, body).await
    }

    async fn raw(&self, method: Method, url: &str, body: Option<Value>) -> (StatusCode, HeaderMap, Value) {
        let mut rb = self.c.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, headers, json)
    }

    /// Polls `Azure-AsyncOperation` until the operation ends; returns the final status
    /// document and how many polls answered `InProgress`.
    async fn wait(&self, headers: &HeaderMap) -> (Value, u32) {
        let url = headers.get("azure-asyncoperation").expect("Azure-AsyncOperation header").to_str().unwrap().to_string();
        assert!(headers.get("retry-after").is_some());
        for in_progress in 0..20 {
            let (status, h, body) = self.raw(Method::GET, &url, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["status"] != "InProgress" {
                return (body, in_progress);
            }
            let secs: u64 = h.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
        panic!("operation never finished");
    }

    /// Polls `Location` until it stops answering 202; returns the final answer.
    async fn wait_location(&self, headers: &HeaderMap) -> (StatusCode, Value, u32) {
        let mut url = headers.get("location").expect("Location header").to_str().unwrap().to_string();
        for accepted in 0..20 {
            let (status, h, body) = self.raw(Method::GET, &url, None).await;
            if status != StatusCode::ACCEPTED {
                return (status, body, accepted);
            }
            url = h.get("location").unwrap().to_str().unwrap().to_string();
        }
        panic!("operation never finished");
    }

    async fn power_state(&self, rg: &str, vm: &str) -> String {
        let (s, _, v) = self.call(Method::GET, &format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}/instanceView"), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["statuses"].as_array().unwrap().iter().find_map(|s| s["code"].as_str().filter(|c| c.starts_with("PowerState/")).map(str::to_string)).unwrap()
    }
}

async fn arm(lab: &AzureLab) -> Arm<'_> {
    let c = Client::new();
    let token = token(&c, lab).await;
    Arm { c, lab, token }
}

fn err_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

// ---------- blob helpers ----------

fn storage_key(lab: &AzureLab) -> Vec<u8> {
    STANDARD.decode(lab.credentials().storage_key).unwrap()
}

/// Sends a Blob request signed with SharedKey (or with `key` when given, to tamper).
async fn blob(lab: &AzureLab, method: Method, path_and_query: &str, headers: &[(&str, &str)], body: Vec<u8>, key: Option<&[u8]>) -> reqwest::Response {
    let c = Client::new();
    let url = format!("{}{path_and_query}", lab.endpoints().blob);
    let mut rb = c.request(method, &url).header("x-ms-version", XMS).header("x-ms-date", httpdate::fmt_http_date(std::time::SystemTime::now()));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if !body.is_empty() {
        rb = rb.header("content-length", body.len().to_string());
    }
    let mut req = rb.body(body).build().unwrap();
    let account = lab.credentials().storage_account;
    let own_key = storage_key(lab);
    let auth = shared_key::authorization(key.unwrap_or(&own_key), req.method(), &account, req.url().path(), req.url().query().unwrap_or(""), req.headers());
    req.headers_mut().insert("authorization", auth.parse().unwrap());
    c.execute(req).await.unwrap()
}

async fn sas_get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = Client::new().get(url).header("x-ms-version", XMS);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

/// `(start, end)` pairs of `<PageRange>` and `<ClearRange>` in a page list.
type Ranges = Vec<(u64, u64)>;

fn page_list(xml: &str) -> (Ranges, Ranges) {
    let mut pages = Vec::new();
    let mut clears = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("Range><Start>") {
        let tag_start = rest[..i].rfind('<').unwrap();
        let is_clear = rest[tag_start..].starts_with("<ClearRange>");
        let after = &rest[i + "Range><Start>".len()..];
        let start: u64 = after[..after.find('<').unwrap()].parse().unwrap();
        let e = after.find("<End>").unwrap() + 5;
        let end: u64 = after[e..e + after[e..].find('<').unwrap()].parse().unwrap();
        if is_clear { clears.push((start, end)) } else { pages.push((start, end)) }
        rest = &after[e..];
    }
    (pages, clears)
}

fn error_code_xml(xml: &str) -> String {
    let s = xml.find("<Code>").map(|i| i + 6).unwrap_or(0);
    let e = xml.find("</Code>").unwrap_or(0);
    xml[s..e].to_string()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
}

// ---------- classic helpers ----------

async fn classic(lab: &AzureLab, method: Method, path: &str, body: &str, version: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let cert = lab.credentials().management_certificate;
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let mut rb = Client::new().request(method.clone(), format!("{}{path}", lab.endpoints().classic));
    if let Some(v) = version {
        rb = rb.header("x-ms-version", v);
    }
    for (k, v) in cert.headers(method.as_str(), p, q, version.unwrap_or(""), body.as_bytes()) {
        rb = rb.header(k, v);
    }
    if !body.is_empty() {
        rb = rb.header("content-type", "application/xml").body(body.to_string());
    }
    let resp = rb.send().await.unwrap();
    let (s, h) = (resp.status(), resp.headers().clone());
    (s, h, resp.text().await.unwrap())
}

/// Polls `/operations/{request-id}` until it leaves `InProgress`.
async fn classic_wait(lab: &AzureLab, headers: &HeaderMap) -> (String, u32) {
    let id = headers.get("x-ms-request-id").unwrap().to_str().unwrap().to_string();
    for in_progress in 0..20 {
        let (s, _, body) = classic(lab, Method::GET, &format!("/{SUB}/operations/{id}"), "", Some(CLASSIC_VERSION)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(body.contains(&format!("<ID>{id}</ID>")));
        if !body.contains("<Status>InProgress</Status>") {
            return (body, in_progress);
        }
    }
    panic!("classic operation never finished");
}

// ================= tests =================

#[tokio::test]
async fn token_flow_auth_errors_and_expiry() {
    let lab = lab();
    let c = Client::new();
    let cred = lab.credentials();
    let url = lab.endpoints().token_url(&cred.tenant_id);

    let bad = c.post(&url).form(&[("grant_type", "client_credentials"), ("client_id", &cred.client_id), ("client_secret", "wrong"), ("scope", &cred.scope)]).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS7000215"));

    let scope = c.post(&url).form(&[("grant_type", "client_credentials"), ("client_id", &cred.client_id), ("client_secret", &cred.client_secret), ("scope", "https://graph.microsoft.com/User.Read")]).send().await.unwrap();
    assert_eq!(scope.status(), StatusCode::BAD_REQUEST);
    assert_eq!(scope.json::<Value>().await.unwrap()["error"], "invalid_scope");

    let other_tenant = c.post(lab.endpoints().token_url("contoso.onmicrosoft.com")).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(other_tenant.status(), StatusCode::BAD_REQUEST);
    assert!(other_tenant.json::<Value>().await.unwrap()["error_description"].as_str().unwrap().starts_with("AADSTS90002"));

    // The v1 endpoint takes `resource` and answers with string-typed lifetimes.
    let v1 = c
        .post(format!("{}/{}/oauth2/token", lab.endpoints().login, cred.tenant_id))
        .form(&[("grant_type", "client_credentials"), ("client_id", &cred.client_id), ("client_secret", &cred.client_secret), ("resource", "https://management.core.windows.net/")])
        .send()
        .await
        .unwrap();
    assert_eq!(v1.status(), StatusCode::OK);
    let v1: Value = v1.json().await.unwrap();
    assert!(v1["expires_in"].is_string() && v1["access_token"].as_str().unwrap().split('.').count() == 3);

    let rg_url = format!("{}/subscriptions/{SUB}/resourcegroups/rg-dr?{API}", lab.endpoints().resource_manager);
    let missing = c.get(&rg_url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer authorization_uri="));
    assert_eq!(err_code(&missing.json().await.unwrap()), "AuthenticationFailed");

    let forged = c.get(&rg_url).bearer_auth("eyJ.forged.token").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(err_code(&forged.json().await.unwrap()), "InvalidAuthenticationToken");

    let arm = arm(&lab).await;
    let (s, _, v) = arm.call(Method::GET, &format!("/subscriptions/{SUB}/resourcegroups/rg-dr"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["name"], "rg-dr");
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");

    let no_version = arm.raw(Method::GET, &format!("{}/subscriptions/{SUB}/resourcegroups/rg-dr", lab.endpoints().resource_manager), None).await;
    assert_eq!(no_version.0, StatusCode::BAD_REQUEST);
    assert_eq!(err_code(&no_version.2), "MissingApiVersionParameter");
    let bad_version = arm.raw(Method::GET, &format!("{}/subscriptions/{SUB}/resourcegroups/rg-dr?api-version=latest", lab.endpoints().resource_manager), None).await;
    assert_eq!((bad_version.0, err_code(&bad_version.2)), (StatusCode::BAD_REQUEST, "InvalidApiVersionParameter"));

    let (s, _, v) = arm.call(Method::GET, "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups", None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::NOT_FOUND, "SubscriptionNotFound"));

    // Injected expiry: the token that just worked is now refused as expired.
    lab.expire_tokens();
    let (s, h, v) = arm.call(Method::GET, &format!("/subscriptions/{SUB}/resourcegroups/rg-dr"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(err_code(&v), "ExpiredAuthenticationToken");
    assert!(h["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let fresh = crate::arm(&lab).await;
    let (s, _, _) = fresh.call(Method::GET, &format!("/subscriptions/{SUB}/resourcegroups/rg-dr"), None).await;
    assert_eq!(s, StatusCode::OK);
    lab.shutdown();
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime() {
    let lab = AzureLab::start_with_toml(AzureLabConfig { token_lifetime: Duration::from_secs(1), ..config() }, SPEC).unwrap();
    let arm = arm(&lab).await;
    // The lifetime is whole seconds; after more than one second the token is past it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _, v) = arm.call(Method::GET, &format!("/subscriptions/{SUB}/resourcegroups"), None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::UNAUTHORIZED, "ExpiredAuthenticationToken"));
}

#[tokio::test]
async fn vm_lifecycle_through_long_running_operations() {
    let lab = lab();
    let arm = arm(&lab).await;
    let rg = format!("/subscriptions/{SUB}/resourceGroups/rg-new");
    let (s, _, v) = arm.call(Method::PUT, &rg, Some(json!({"location": "westeurope"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let vnet = format!("{rg}/providers/Microsoft.Network/virtualNetworks/vnet1");
    let (s, h, v) = arm
        .call(Method::PUT, &vnet, Some(json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.1.0.0/16"]}, "subnets": [{"name": "s1", "properties": {"addressPrefix": "10.1.1.0/24"}}]}})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(arm.wait(&h).await.0["status"], "Succeeded");
    let subnet_id = format!("{vnet}/subnets/s1");

    let nic = format!("{rg}/providers/Microsoft.Network/networkInterfaces/vm1-nic");
    let (s, _, v) = arm
        .call(Method::PUT, &nic, Some(json!({"location": "westeurope", "properties": {"ipConfigurations": [{"name": "ip1", "properties": {"subnet": {"id": "/subscriptions/x/resourceGroups/rg-new/providers/Microsoft.Network/virtualNetworks/none/subnets/s1"}}}]}})))
        .await;
    assert_eq!((s, err_code(&v)), (StatusCode::BAD_REQUEST, "InvalidResourceReference"));
    let (s, h, v) = arm.call(Method::PUT, &nic, Some(json!({"location": "westeurope", "properties": {"ipConfigurations": [{"name": "ip1", "properties": {"subnet": {"id": subnet_id}}}]}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"].as_str().unwrap().starts_with("10.1.1."));
    arm.wait(&h).await;

    let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm1");
    let vm_body = json!({
        "location": "westeurope",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
            "storageProfile": {
                "osDisk": {"createOption": "FromImage", "name": "vm1-os", "diskSizeGB": 1, "osType": "Linux"},
                "dataDisks": [{"lun": 0, "createOption": "Empty", "diskSizeGB": 1, "name": "vm1-data0"}],
            },
            "osProfile": {"computerName": "vm1", "adminUsername": "azureuser", "adminPassword": "S3cret!pass"},
            "networkProfile": {"networkInterfaces": [{"id": nic}]},
        }
    });
    let mut no_size = vm_body.clone();
    no_size["properties"]["hardwareProfile"] = json!({});
    let (s, _, v) = arm.call(Method::PUT, &vm, Some(no_size)).await;
    assert_eq!((s, err_code(&v)), (StatusCode::BAD_REQUEST, "InvalidParameter"));

    let (s, h, v) = arm.call(Method::PUT, &vm, Some(vm_body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["properties"]["provisioningState"], "Creating");
    assert!(v["properties"]["osProfile"].get("adminPassword").is_none());
    assert_eq!(arm.power_state("rg-new", "vm1").await, "PowerState/starting");
    let (done, in_progress) = arm.wait(&h).await;
    assert_eq!(done["status"], "Succeeded");
    assert_eq!(in_progress, 1);

    let (s, _, v) = arm.call(Method::GET, &format!("{vm}?$expand=instanceView"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");
    let codes: Vec<&str> = v["properties"]["instanceView"]["statuses"].as_array().unwrap().iter().map(|s| s["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["ProvisioningState/succeeded", "PowerState/running"]);
    assert_eq!(v["properties"]["storageProfile"]["dataDisks"][0]["lun"], 0);

    // The disk behind the VM is attached and cannot be deleted.
    let disk = format!("{rg}/providers/Microsoft.Compute/disks/vm1-data0");
    let (s, _, v) = arm.call(Method::GET, &disk, None).await;
    assert_eq!(v["properties"]["diskState"], "Attached");
    assert_eq!(v["properties"]["diskSizeGB"], 1);
    let (s2, _, v2) = arm.call(Method::DELETE, &disk, None).await;
    assert_eq!((s, s2, err_code(&v2)), (StatusCode::OK, StatusCode::CONFLICT, "OperationNotAllowed"));

    for (action, expected) in [("powerOff", "PowerState/stopped"), ("deallocate", "PowerState/deallocated"), ("start", "PowerState/running")] {
        let (s, h, _) = arm.call(Method::POST, &format!("{vm}/{action}"), None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{action}");
        let (status, _, accepted) = arm.wait_location(&h).await;
        assert!(status.is_success(), "{action}: {status}");
        assert_eq!(accepted, 1, "{action} was in progress once");
        assert_eq!(arm.power_state("rg-new", "vm1").await, expected);
    }

    let (s, _, v) = arm.call(Method::GET, &format!("{rg}/providers/Microsoft.Compute/virtualMachines"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    let (_, _, all) = arm.call(Method::GET, &format!("/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines"), None).await;
    assert_eq!(all["value"].as_array().unwrap().len(), 2, "web01 from the spec and vm1");

    let (s, h, _) = arm.call(Method::DELETE, &vm, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, v) = arm.call(Method::POST, &format!("{vm}/start"), None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "Conflict"), "no power action while deleting");
    assert_eq!(arm.wait(&h).await.0["status"], "Succeeded");
    let (s, _, v) = arm.call(Method::GET, &vm, None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::NOT_FOUND, "ResourceNotFound"));
    let (_, _, v) = arm.call(Method::GET, &disk, None).await;
    assert_eq!(v["properties"]["diskState"], "Unattached");
    assert!(!lab.vm_exists(SUB, "rg-new", "vm1"));

    // Deleting the group removes what is left in it.
    let (s, h, _) = arm.call(Method::DELETE, &rg, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, _, v) = arm.call(Method::GET, &rg, None).await;
    assert_eq!(v["properties"]["provisioningState"], "Deleting");
    let (status, _, _) = arm.wait_location(&h).await;
    assert!(status.is_success());
    let (s, _, v) = arm.call(Method::GET, &disk, None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::NOT_FOUND, "ResourceGroupNotFound"));
}

#[tokio::test]
async fn disks_are_imported_from_vhd_blobs_and_uploaded_through_write_sas() {
    let lab = lab();
    let arm = arm(&lab).await;
    let acct = lab.credentials().storage_account;
    let rg = format!("/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.Compute");
    let size: u64 = 4 << 20;

    // A replica VHD built by a client in the customer's account, then imported.
    blob(&lab, Method::PUT, &format!("/{acct}/vhds?restype=container"), &[], vec![], None).await;
    let total = (size + 512).to_string();
    blob(&lab, Method::PUT, &format!("/{acct}/vhds/replica.vhd"), &[("x-ms-blob-type", "PageBlob"), ("x-ms-blob-content-length", &total)], vec![], None).await;
    blob(&lab, Method::PUT, &format!("/{acct}/vhds/replica.vhd?comp=page"), &[("x-ms-range", "bytes=8192-12287"), ("x-ms-page-write", "update")], pattern(6, 4096), None).await;
    let footer = VhdFooter::fixed(size, [3; 16], 1_700_000_000).unwrap().to_bytes().to_vec();
    let footer_range = format!("bytes={size}-{}", size + 511);
    let r = blob(&lab, Method::PUT, &format!("/{acct}/vhds/replica.vhd?comp=page"), &[("x-ms-range", &footer_range), ("x-ms-page-write", "update")], footer, None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let source = format!("{}/{acct}/vhds/replica.vhd", lab.endpoints().blob);
    let body = json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Import", "sourceUri": source, "storageAccountId": format!("/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.Storage/storageAccounts/{acct}")}}});
    let (s, h, v) = arm.call(Method::PUT, &format!("{rg}/disks/imported"), Some(body)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    arm.wait(&h).await;
    let (_, _, v) = arm.call(Method::GET, &format!("{rg}/disks/imported"), None).await;
    assert_eq!(v["properties"]["diskSizeBytes"], size);
    let imported = DiskId::Managed { subscription: SUB.into(), resource_group: "rg-dr".into(), disk: "imported".into() };
    assert_eq!(lab.read_disk(&imported, 8192, 4096).unwrap(), pattern(6, 4096));

    // A blob without a VHD footer cannot be imported.
    blob(&lab, Method::PUT, &format!("/{acct}/vhds/raw.img"), &[("x-ms-blob-type", "PageBlob"), ("x-ms-blob-content-length", "1048576")], vec![], None).await;
    let body = json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Import", "sourceUri": format!("{}/{acct}/vhds/raw.img", lab.endpoints().blob)}}});
    let (s, _, v) = arm.call(Method::PUT, &format!("{rg}/disks/bad"), Some(body)).await;
    assert_eq!((s, err_code(&v)), (StatusCode::BAD_REQUEST, "InvalidParameter"));

    // Upload: an empty disk written through a Write SAS, sealed by endGetAccess.
    let body = json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Upload", "uploadSizeBytes": size + 512}}});
    let (s, h, _) = arm.call(Method::PUT, &format!("{rg}/disks/uploaded"), Some(body)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    arm.wait(&h).await;
    let (_, _, v) = arm.call(Method::GET, &format!("{rg}/disks/uploaded"), None).await;
    assert_eq!(v["properties"]["diskState"], "ReadyToUpload");
    let (_, h, _) = arm.call(Method::POST, &format!("{rg}/disks/uploaded/beginGetAccess"), Some(json!({"access": "Write", "durationInSeconds": 600}))).await;
    let (_, grant, _) = arm.wait_location(&h).await;
    let sas = grant["accessSAS"].as_str().unwrap().to_string();
    assert!(sas.contains("sp=rw"));
    let (_, _, v) = arm.call(Method::GET, &format!("{rg}/disks/uploaded"), None).await;
    assert_eq!(v["properties"]["diskState"], "ActiveUpload");
    let put = Client::new()
        .put(format!("{sas}&comp=page"))
        .header("x-ms-version", XMS)
        .header("x-ms-range", "bytes=0-4095")
        .header("x-ms-page-write", "update")
        .body(pattern(7, 4096))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let (_, h, _) = arm.call(Method::POST, &format!("{rg}/disks/uploaded/endGetAccess"), None).await;
    arm.wait_location(&h).await;
    let uploaded = DiskId::Managed { subscription: SUB.into(), resource_group: "rg-dr".into(), disk: "uploaded".into() };
    assert_eq!(lab.read_disk(&uploaded, 0, 4096).unwrap(), pattern(7, 4096));
    let (_, _, v) = arm.call(Method::GET, &format!("{rg}/disks/uploaded"), None).await;
    assert_eq!(v["properties"]["diskState"], "Unattached");
}

#[tokio::test]
async fn disks_snapshots_and_access_sas() {
    let lab = lab();
    let arm = arm(&lab).await;
    let rg = format!("/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.Compute");
    let data = lab.vm_disks(SUB, "rg-dr", "web01").unwrap()[1].clone();
    assert_eq!((data.lun, data.size_bytes), (Some(0), 8 << 20));
    let disk_id = format!("/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.Compute/disks/{}", data.name);

    // A running VM's disk cannot be exported.
    let grant = json!({"access": "Read", "durationInSeconds": 3600});
    let (s, _, v) = arm.call(Method::POST, &format!("{rg}/disks/{}/beginGetAccess", data.name), Some(grant.clone())).await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "OperationNotAllowed"));

    lab.write_disk(&data.id, 0, &pattern(1, 4096)).unwrap();
    lab.write_disk(&data.id, 1 << 20, &pattern(2, 8192)).unwrap();
    let snap = json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk_id}, "incremental": true}});
    let (s, h, v) = arm.call(Method::PUT, &format!("{rg}/snapshots/s1"), Some(snap.clone())).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(arm.wait(&h).await.0["status"], "Succeeded");
    let (_, _, v) = arm.call(Method::GET, &format!("{rg}/snapshots/s1"), None).await;
    assert_eq!(v["properties"]["incremental"], true);
    assert_eq!(v["properties"]["provisioningState"], "Succeeded");
    assert_eq!(v["properties"]["diskSizeBytes"], 8 << 20);

    // Guest activity between the two snapshots: a new write, an overwrite, a TRIM of data
    // that existed, and a write that is discarded again before the second snapshot.
    lab.write_disk(&data.id, 64 * 1024, &pattern(3, 4096)).unwrap();
    lab.write_disk(&data.id, (1 << 20) + 4096, &pattern(4, 512)).unwrap();
    lab.clear_disk(&data.id, 1024, 2048).unwrap();
    lab.write_disk(&data.id, 2 << 20, &pattern(5, 1024)).unwrap();
    lab.clear_disk(&data.id, 2 << 20, 1024).unwrap();
    let (s, h, _) = arm.call(Method::PUT, &format!("{rg}/snapshots/s2"), Some(snap.clone())).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    arm.wait(&h).await;

    let mut sas = Vec::new();
    for name in ["s1", "s2"] {
        let (s, h, _) = arm.call(Method::POST, &format!("{rg}/snapshots/{name}/beginGetAccess"), Some(grant.clone())).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let (status, body, _) = arm.wait_location(&h).await;
        assert_eq!(status, StatusCode::OK);
        sas.push(body["accessSAS"].as_str().unwrap().to_string());
    }
    let (_, _, v) = arm.call(Method::GET, &format!("{rg}/snapshots/s2"), None).await;
    assert_eq!(v["properties"]["diskState"], "ActiveSAS");
    assert!(sas[1].starts_with(&lab.endpoints().blob));
    assert!(sas[1].contains("sv=") && sas[1].contains("sr=b") && sas[1].contains("sp=r") && sas[1].contains("sig="));

    // Incremental diff between the two snapshots, the way managed disks do it.
    let resp = sas_get(&format!("{}&comp=pagelist", sas[1]), &[("x-ms-previous-snapshot-url", &sas[0])]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (pages, clears) = page_list(&resp.text().await.unwrap());
    assert_eq!(pages, vec![(64 * 1024, 64 * 1024 + 4095), ((1 << 20) + 4096, (1 << 20) + 4096 + 511)]);
    assert_eq!(clears, vec![(1024, 3071)]);

    // Full page list of the second snapshot, including the VHD footer page.
    let (pages, clears) = page_list(&sas_get(&format!("{}&comp=pagelist", sas[1]), &[]).await.text().await.unwrap());
    let footer = 8u64 << 20;
    assert_eq!(pages, vec![(0, 1023), (3072, 4095), (64 * 1024, 64 * 1024 + 4095), (1 << 20, (1 << 20) + 8191), (footer, footer + 511)]);
    assert!(clears.is_empty());

    // Ranged reads through the SAS return the guest's bytes, zeros where cleared, and the footer.
    let resp = sas_get(&sas[1], &[("x-ms-range", "bytes=1048576-1056767")]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let mut expected = pattern(2, 8192);
    expected[4096..4608].copy_from_slice(&pattern(4, 512));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &expected[..]);
    let cleared = sas_get(&sas[1], &[("range", "bytes=1024-3071")]).await.bytes().await.unwrap();
    assert!(cleared.iter().all(|b| *b == 0));
    let tail = sas_get(&sas[1], &[("x-ms-range", &format!("bytes={footer}-{}", footer + 511))]).await.bytes().await.unwrap();
    let f = VhdFooter::parse(&tail).unwrap();
    assert_eq!((f.current_size, f.disk_type), (8 << 20, 2));

    // A read SAS cannot write; a tampered one is refused; after endGetAccess it is dead.
    let put = Client::new()
        .put(format!("{}&comp=page", sas[1]))
        .header("x-ms-version", XMS)
        .header("x-ms-range", "bytes=0-511")
        .header("x-ms-page-write", "update")
        .body(vec![7u8; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
    assert_eq!(put.headers()["x-ms-error-code"], "AuthorizationPermissionMismatch");
    let tampered = sas[1].replace("sp=r", "sp=rw");
    let resp = sas_get(&tampered, &[]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.headers()["x-ms-error-code"], "AuthenticationFailed");
    let (s, h, _) = arm.call(Method::POST, &format!("{rg}/snapshots/s2/endGetAccess"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    arm.wait_location(&h).await;
    assert_eq!(sas_get(&sas[1], &[("x-ms-range", "bytes=0-511")]).await.status(), StatusCode::FORBIDDEN);

    // After deallocation the disk itself can be exported and read as a VHD.
    let (_, h, _) = arm.call(Method::POST, &format!("/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.Compute/virtualMachines/web01/deallocate"), None).await;
    arm.wait(&h).await;
    let (s, h, _) = arm.call(Method::POST, &format!("{rg}/disks/{}/beginGetAccess", data.name), Some(grant)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, body, _) = arm.wait_location(&h).await;
    let disk_sas = body["accessSAS"].as_str().unwrap().to_string();
    let head = sas_get(&disk_sas, &[("x-ms-range", "bytes=0-1023")]).await.bytes().await.unwrap();
    assert_eq!(head.as_ref(), &pattern(1, 1024)[..]);
    // While the SAS is active the VM cannot start.
    let (s, _, v) = arm.call(Method::POST, &format!("/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.Compute/virtualMachines/web01/start"), None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::CONFLICT, "OperationNotAllowed"));

    // A disk copied from a snapshot holds the snapshot's data.
    let copy = json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": format!("/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.Compute/snapshots/s2")}}});
    let (s, h, _) = arm.call(Method::PUT, &format!("{rg}/disks/restored"), Some(copy)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    arm.wait(&h).await;
    let restored = DiskId::Managed { subscription: SUB.into(), resource_group: "rg-dr".into(), disk: "restored".into() };
    assert_eq!(lab.read_disk(&restored, 64 * 1024, 4096).unwrap(), pattern(3, 4096));
    let (s, _, v) = arm.call(Method::GET, &format!("{rg}/disks/missing"), None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::NOT_FOUND, "ResourceNotFound"));
}

#[tokio::test]
async fn disk_files_are_fixed_vhds_that_qemu_img_reads() {
    let lab = lab();
    let os = lab.vm_disks(SUB, "rg-dr", "web01").unwrap()[0].clone();
    lab.write_disk(&os.id, 0, &pattern(9, 4096)).unwrap();
    let meta = std::fs::metadata(&os.path).unwrap();
    assert_eq!(meta.len(), os.size_bytes + 512);
    {
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < os.size_bytes / 2, "the disk file is sparse");
    }
    let bytes = std::fs::read(&os.path).unwrap();
    let footer = VhdFooter::parse(&bytes[bytes.len() - 512..]).unwrap();
    assert_eq!(footer.current_size, os.size_bytes);
    assert_eq!(&bytes[..4096], &pattern(9, 4096)[..]);
    let out = match std::process::Command::new("qemu-img").args(["info", "-f", "vpc", "--output=json"]).arg(&os.path).output() {
        Ok(o) => o,
        Err(e) => {
            println!("skipping the qemu-img check: qemu-img is not runnable ({e})");
            return;
        }
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("checksum"), "{}", String::from_utf8_lossy(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["format"], "vpc");
    assert_eq!(info["virtual-size"], os.size_bytes);
}

#[tokio::test]
async fn page_blobs_put_page_and_prevsnapshot_diff_with_shared_key() {
    let lab = lab();
    let acct = lab.credentials().storage_account;
    let base = format!("/{acct}/replica");
    let r = blob(&lab, Method::PUT, &format!("{base}?restype=container"), &[], vec![], None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let size = (8u64 << 20).to_string();
    let r = blob(&lab, Method::PUT, &format!("{base}/disk.vhd"), &[("x-ms-blob-type", "PageBlob"), ("x-ms-blob-content-length", &size)], vec![], None).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let put = |range: String, data: Vec<u8>| {
        let lab = &lab;
        let base = base.clone();
        async move {
            blob(lab, Method::PUT, &format!("{base}/disk.vhd?comp=page"), &[("x-ms-range", &range), ("x-ms-page-write", "update")], data, None).await
        }
    };
    let clear = |range: String| {
        let lab = &lab;
        let base = base.clone();
        async move { blob(lab, Method::PUT, &format!("{base}/disk.vhd?comp=page"), &[("x-ms-range", &range), ("x-ms-page-write", "clear")], vec![], None).await }
    };
    assert_eq!(put("bytes=0-1023".into(), pattern(1, 1024)).await.status(), StatusCode::CREATED);
    assert_eq!(put("bytes=4096-8191".into(), pattern(2, 4096)).await.status(), StatusCode::CREATED);

    let snap = blob(&lab, Method::PUT, &format!("{base}/disk.vhd?comp=snapshot"), &[], vec![], None).await;
    assert_eq!(snap.status(), StatusCode::CREATED);
    let s1 = snap.headers()["x-ms-snapshot"].to_str().unwrap().to_string();

    assert_eq!(put("bytes=1024-2047".into(), pattern(3, 1024)).await.status(), StatusCode::CREATED);
    assert_eq!(clear("bytes=4096-5119".into()).await.status(), StatusCode::CREATED);
    assert_eq!(put("bytes=6144-7167".into(), pattern(4, 1024)).await.status(), StatusCode::CREATED);
    assert_eq!(put("bytes=65536-66047".into(), pattern(5, 512)).await.status(), StatusCode::CREATED);
    assert_eq!(clear("bytes=65536-66047".into()).await.status(), StatusCode::CREATED);

    let s1_q = s1.replace(':', "%3A");
    let diff = blob(&lab, Method::GET, &format!("{base}/disk.vhd?comp=pagelist&prevsnapshot={s1_q}"), &[], vec![], None).await;
    assert_eq!(diff.status(), StatusCode::OK);
    assert_eq!(diff.headers()["x-ms-blob-content-length"], size.as_str());
    let (pages, clears) = page_list(&diff.text().await.unwrap());
    assert_eq!(pages, vec![(1024, 2047), (6144, 7167)]);
    assert_eq!(clears, vec![(4096, 5119)]);

    let all = blob(&lab, Method::GET, &format!("{base}/disk.vhd?comp=pagelist"), &[], vec![], None).await;
    assert_eq!(page_list(&all.text().await.unwrap()), (vec![(0, 2047), (5120, 8191)], vec![]));
    let old = blob(&lab, Method::GET, &format!("{base}/disk.vhd?comp=pagelist&snapshot={s1_q}"), &[], vec![], None).await;
    assert_eq!(page_list(&old.text().await.unwrap()), (vec![(0, 1023), (4096, 8191)], vec![]));
    let window = blob(&lab, Method::GET, &format!("{base}/disk.vhd?comp=pagelist"), &[("x-ms-range", "bytes=1536-6143")], vec![], None).await;
    assert_eq!(page_list(&window.text().await.unwrap()), (vec![(1536, 2047), (5120, 6143)], vec![]));

    let head = blob(&lab, Method::HEAD, &format!("{base}/disk.vhd"), &[], vec![], None).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], size.as_str());
    assert_eq!(head.headers()["x-ms-blob-type"], "PageBlob");
    let get = blob(&lab, Method::GET, &format!("{base}/disk.vhd"), &[("x-ms-range", "bytes=1024-2047")], vec![], None).await;
    assert_eq!(get.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(get.headers()["content-range"], format!("bytes 1024-2047/{size}").as_str());
    assert_eq!(get.bytes().await.unwrap().as_ref(), &pattern(3, 1024)[..]);
    let old = blob(&lab, Method::GET, &format!("{base}/disk.vhd?snapshot={s1_q}"), &[("range", "bytes=4096-5119")], vec![], None).await;
    assert_eq!(old.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(old.bytes().await.unwrap().as_ref(), &pattern(2, 4096)[..1024]);

    let misaligned = put("bytes=100-611".into(), vec![0; 512]).await;
    assert_eq!(misaligned.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(error_code_xml(&misaligned.text().await.unwrap()), "InvalidPageRange");
    let beyond = put(format!("bytes={}-{}", 8 << 20, (8 << 20) + 511), vec![0; 512]).await;
    assert_eq!(beyond.headers()["x-ms-error-code"], "InvalidPageRange");
    let big = (4 << 20) + 512;
    let too_large = put(format!("bytes=0-{}", big - 1), vec![1; big]).await;
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.headers()["x-ms-error-code"], "RequestBodyTooLarge");
    assert_eq!(put(format!("bytes=0-{}", (4 << 20) - 1), vec![6; 4 << 20]).await.status(), StatusCode::CREATED, "exactly 4 MiB is allowed");

    // SharedKey signed with another key, or a request changed after signing, is refused.
    let wrong = blob(&lab, Method::GET, &format!("{base}/disk.vhd?comp=pagelist"), &[], vec![], Some(b"not the key")).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(wrong.headers()["x-ms-error-code"], "AuthenticationFailed");
    let c = Client::new();
    let mut req = c
        .get(format!("{}{base}/disk.vhd", lab.endpoints().blob))
        .header("x-ms-version", XMS)
        .header("x-ms-date", httpdate::fmt_http_date(std::time::SystemTime::now()))
        .header("x-ms-range", "bytes=0-511")
        .build()
        .unwrap();
    let auth = shared_key::authorization(&storage_key(&lab), req.method(), &acct, req.url().path(), "", req.headers());
    req.headers_mut().insert("authorization", auth.parse().unwrap());
    req.headers_mut().insert("x-ms-range", "bytes=512-1023".parse().unwrap());
    assert_eq!(c.execute(req).await.unwrap().status(), StatusCode::FORBIDDEN);
    let anonymous = c.get(format!("{}{base}/disk.vhd", lab.endpoints().blob)).send().await.unwrap();
    assert_eq!(anonymous.headers()["x-ms-error-code"], "NoAuthenticationInformation");

    let del = blob(&lab, Method::DELETE, &format!("{base}/disk.vhd"), &[], vec![], None).await;
    assert_eq!(del.headers()["x-ms-error-code"], "SnapshotsPresent");
    let del = blob(&lab, Method::DELETE, &format!("{base}/disk.vhd"), &[("x-ms-delete-snapshots", "include")], vec![], None).await;
    assert_eq!(del.status(), StatusCode::ACCEPTED);
    let gone = blob(&lab, Method::GET, &format!("{base}/disk.vhd"), &[], vec![], None).await;
    assert_eq!(gone.headers()["x-ms-error-code"], "BlobNotFound");
}

#[tokio::test]
async fn service_sas_is_verified_for_signature_expiry_and_permissions() {
    let lab = lab();
    let acct = lab.credentials().storage_account;
    let key = storage_key(&lab);
    assert_eq!(blob(&lab, Method::PUT, &format!("/{acct}/c?restype=container"), &[], vec![], None).await.status(), StatusCode::CREATED);
    blob(&lab, Method::PUT, &format!("/{acct}/c/b.vhd"), &[("x-ms-blob-type", "PageBlob"), ("x-ms-blob-content-length", "4096")], vec![], None).await;
    blob(&lab, Method::PUT, &format!("/{acct}/c/b.vhd?comp=page"), &[("x-ms-range", "bytes=0-511"), ("x-ms-page-write", "update")], pattern(8, 512), None).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let url = |p: &SasParams| format!("{}/{acct}/c/b.vhd?{}", lab.endpoints().blob, p.to_query(&key, &canonical_blob(&acct, "c", "b.vhd")));

    let read = SasParams::blob("r", now + 600);
    let ok = sas_get(&url(&read), &[("x-ms-range", "bytes=0-511")]).await;
    assert_eq!(ok.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ok.bytes().await.unwrap().as_ref(), &pattern(8, 512)[..]);

    let mut older = SasParams::blob("r", now + 600);
    older.version = "2018-03-28".into();
    assert_eq!(sas_get(&url(&older), &[]).await.status(), StatusCode::OK, "pre-2018-11-09 string-to-sign");

    let expired = SasParams::blob("r", now - 60);
    let r = sas_get(&url(&expired), &[]).await;
    assert_eq!((r.status(), r.headers()["x-ms-error-code"].to_str().unwrap()), (StatusCode::FORBIDDEN, "AuthenticationFailed"));

    let forged = url(&read).replace("sig=", "sig=AAAA");
    assert_eq!(sas_get(&forged, &[]).await.status(), StatusCode::FORBIDDEN);
    let other_blob = url(&read).replace("/b.vhd?", "/other.vhd?");
    assert_eq!(sas_get(&other_blob, &[]).await.status(), StatusCode::FORBIDDEN);

    let write = |u: String| async move {
        Client::new()
            .put(format!("{u}&comp=page"))
            .header("x-ms-version", XMS)
            .header("x-ms-range", "bytes=512-1023")
            .header("x-ms-page-write", "update")
            .body(pattern(9, 512))
            .send()
            .await
            .unwrap()
    };
    let denied = write(url(&read)).await;
    assert_eq!(denied.headers()["x-ms-error-code"], "AuthorizationPermissionMismatch");
    assert_eq!(write(url(&SasParams::blob("rw", now + 600))).await.status(), StatusCode::CREATED);
    let r = sas_get(&url(&read), &[("x-ms-range", "bytes=512-1023")]).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), &pattern(9, 512)[..]);
}

#[tokio::test]
async fn classic_deployment_roles_operations_and_auth() {
    let lab = lab();
    let (s, _, body) = classic(&lab, Method::GET, &format!("/{SUB}/services/hostedservices"), "", Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("<ServiceName>legacy-svc</ServiceName>"), "{body}");

    let (s, _, dep) = classic(&lab, Method::GET, &format!("/{SUB}/services/hostedservices/legacy-svc/deploymentslots/Production"), "", Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(dep.contains(r#"<Deployment xmlns="http://schemas.microsoft.com/windowsazure""#), "{dep}");
    assert!(dep.contains("<RoleInstanceList><RoleInstance><RoleName>app01</RoleName>"));
    assert!(dep.contains("<PowerState>Started</PowerState>"));
    assert!(dep.contains("<InstanceStatus>ReadyRole</InstanceStatus>"));
    assert!(dep.contains("<VirtualNetworkName>classic-vnet</VirtualNetworkName>"));
    assert!(dep.contains("<IpAddress>10.20.1.4</IpAddress>"), "addressed from Subnet-1");
    let media = dep.split("<OSVirtualHardDisk>").nth(1).unwrap().split("<MediaLink>").nth(1).unwrap().split("</MediaLink>").next().unwrap().to_string();
    assert!(dep.contains("<DataVirtualHardDisks><DataVirtualHardDisk>"));
    let path = media.strip_prefix(&lab.endpoints().blob).unwrap().to_string();
    let footer = blob(&lab, Method::GET, &path, &[("x-ms-range", &format!("bytes={}-{}", 16 << 20, (16 << 20) + 511))], vec![], None).await;
    assert_eq!(footer.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(VhdFooter::parse(&footer.bytes().await.unwrap()).unwrap().current_size, 16 << 20);

    let (s, _, vnets) = classic(&lab, Method::GET, &format!("/{SUB}/services/networking/virtualnetwork"), "", Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(vnets.contains("<VirtualNetworkSite><Name>classic-vnet</Name>") && vnets.contains("<Subnet><Name>Subnet-1</Name><AddressPrefix>10.20.1.0/24</AddressPrefix></Subnet>"), "{vnets}");

    for version in [None, Some("yesterday")] {
        let (s, _, err) = classic(&lab, Method::GET, &format!("/{SUB}/services/hostedservices"), "", version).await;
        assert_eq!((s, error_code_xml(&err).as_str()), (StatusCode::BAD_REQUEST, "MissingOrIncorrectVersionHeader"));
    }

    // Wrong proof and wrong certificate are both ForbiddenError.
    let url = format!("{}/{SUB}/services/hostedservices", lab.endpoints().classic);
    let cert = lab.credentials().management_certificate;
    let forged = Client::new()
        .get(&url)
        .header("x-ms-version", CLASSIC_VERSION)
        .header("x-homeward-certificate-thumbprint", cert.thumbprint.as_str())
        .header("x-homeward-certificate-signature", cert.sign("GET", "/other", "", CLASSIC_VERSION, b""))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let text = forged.text().await.unwrap();
    assert_eq!(error_code_xml(&text), "ForbiddenError");
    assert!(text.contains("<Message>The server failed to authenticate the request."));
    let stranger = homeward_lab::azure::ManagementCertificate::generate();
    let mut rb = Client::new().get(&url).header("x-ms-version", CLASSIC_VERSION);
    for (k, v) in stranger.headers("GET", &format!("/{SUB}/services/hostedservices"), "", CLASSIC_VERSION, b"") {
        rb = rb.header(k, v);
    }
    assert_eq!(rb.send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // Shutdown and start through Operations, followed through operation status.
    let ops = format!("/{SUB}/services/hostedservices/legacy-svc/deployments/legacy-svc/roleinstances/app01/Operations");
    let shutdown = r#"<ShutdownRoleOperation xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><OperationType>ShutdownRoleOperation</OperationType><PostShutdownAction>StoppedDeallocated</PostShutdownAction></ShutdownRoleOperation>"#;
    let (s, h, _) = classic(&lab, Method::POST, &ops, shutdown, Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(lab.classic_role_state(SUB, "legacy-svc", "app01").unwrap().0, "Stopping");
    let (busy, _, _) = classic(&lab, Method::POST, &ops, shutdown, Some(CLASSIC_VERSION)).await;
    assert_eq!(busy, StatusCode::CONFLICT);
    let (done, in_progress) = classic_wait(&lab, &h).await;
    assert!(done.contains("<Status>Succeeded</Status><HttpStatusCode>200</HttpStatusCode>"), "{done}");
    assert_eq!(in_progress, 1);
    let (_, _, dep) = classic(&lab, Method::GET, &format!("/{SUB}/services/hostedservices/legacy-svc/deployments/legacy-svc"), "", Some(CLASSIC_VERSION)).await;
    assert!(dep.contains("<InstanceStatus>StoppedDeallocated</InstanceStatus>") && dep.contains("<PowerState>Stopped</PowerState>"), "{dep}");

    let start = r#"<StartRoleOperation xmlns="http://schemas.microsoft.com/windowsazure"><OperationType>StartRoleOperation</OperationType></StartRoleOperation>"#;
    let (s, h, _) = classic(&lab, Method::POST, &ops, start, Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    classic_wait(&lab, &h).await;
    assert_eq!(lab.classic_role_state(SUB, "legacy-svc", "app01").unwrap(), ("Started".into(), "ReadyRole".into()));

    // Add a second role (a process server), then delete it with its media.
    let acct = lab.credentials().storage_account;
    let role = format!(
        r#"<PersistentVMRole xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><RoleName>ps01</RoleName><RoleType>PersistentVMRole</RoleType><ConfigurationSets><ConfigurationSet i:type="NetworkConfigurationSet"><ConfigurationSetType>NetworkConfiguration</ConfigurationSetType><SubnetNames><SubnetName>Subnet-1</SubnetName></SubnetNames></ConfigurationSet></ConfigurationSets><DataVirtualHardDisks><DataVirtualHardDisk><Lun>0</Lun><LogicalDiskSizeInGB>2</LogicalDiskSizeInGB><MediaLink>{b}/{acct}/vhds/ps01-data.vhd</MediaLink></DataVirtualHardDisk></DataVirtualHardDisks><OSVirtualHardDisk><MediaLink>{b}/{acct}/vhds/ps01-os.vhd</MediaLink><OS>Windows</OS></OSVirtualHardDisk><RoleSize>Medium</RoleSize></PersistentVMRole>"#,
        b = lab.endpoints().blob
    );
    let (s, h, _) = classic(&lab, Method::POST, &format!("/{SUB}/services/hostedservices/legacy-svc/deployments/legacy-svc/roles"), &role, Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    classic_wait(&lab, &h).await;
    let (s, _, r) = classic(&lab, Method::GET, &format!("/{SUB}/services/hostedservices/legacy-svc/deployments/legacy-svc/roles/ps01"), "", Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(r.contains("<SubnetName>Subnet-1</SubnetName>") && r.contains("<Lun>0</Lun><LogicalDiskSizeInGB>2</LogicalDiskSizeInGB>"), "{r}");
    assert_eq!(lab.classic_vm_disks(SUB, "legacy-svc", "ps01").unwrap().len(), 2);

    let (s, h, _) = classic(&lab, Method::DELETE, &format!("/{SUB}/services/hostedservices/legacy-svc/deployments/legacy-svc/roles/ps01?comp=media"), "", Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(lab.classic_role_exists(SUB, "legacy-svc", "ps01"), "deleted only when the operation completes");
    classic_wait(&lab, &h).await;
    assert!(!lab.classic_role_exists(SUB, "legacy-svc", "ps01"));
    let gone = blob(&lab, Method::GET, &format!("/{acct}/vhds/ps01-os.vhd"), &[], vec![], None).await;
    assert_eq!(gone.headers()["x-ms-error-code"], "BlobNotFound");
    let (s, _, err) = classic(&lab, Method::DELETE, &format!("/{SUB}/services/hostedservices/legacy-svc/deployments/legacy-svc/roles/app01"), "", Some(CLASSIC_VERSION)).await;
    assert_eq!((s, error_code_xml(&err).as_str()), (StatusCode::BAD_REQUEST, "BadRequest"), "the last role cannot be deleted alone");
    // A new cloud service with a VM deployment in the classic network (a process server).
    let create = r#"<CreateHostedService xmlns="http://schemas.microsoft.com/windowsazure"><ServiceName>ps-svc</ServiceName><Label>cHMtc3Zj</Label><Location>West Europe</Location></CreateHostedService>"#;
    let (s, _, _) = classic(&lab, Method::POST, &format!("/{SUB}/services/hostedservices"), create, Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::CREATED);
    let deployment = |vnet: &str| {
        format!(
            r#"<Deployment xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Name>ps-svc</Name><DeploymentSlot>Production</DeploymentSlot><Label>cHM=</Label><RoleList><Role><RoleName>ps02</RoleName><RoleType>PersistentVMRole</RoleType><ConfigurationSets><ConfigurationSet i:type="NetworkConfigurationSet"><ConfigurationSetType>NetworkConfiguration</ConfigurationSetType><SubnetNames><SubnetName>Subnet-1</SubnetName></SubnetNames></ConfigurationSet></ConfigurationSets><OSVirtualHardDisk><MediaLink>{}/{acct}/vhds/ps02-os.vhd</MediaLink><OS>Windows</OS></OSVirtualHardDisk><RoleSize>Large</RoleSize></Role></RoleList><VirtualNetworkName>{vnet}</VirtualNetworkName></Deployment>"#,
            lab.endpoints().blob
        )
    };
    let (s, _, err) = classic(&lab, Method::POST, &format!("/{SUB}/services/hostedservices/ps-svc/deployments"), &deployment("no-such-vnet"), Some(CLASSIC_VERSION)).await;
    assert_eq!((s, error_code_xml(&err).as_str()), (StatusCode::BAD_REQUEST, "BadRequest"));
    let (s, h, _) = classic(&lab, Method::POST, &format!("/{SUB}/services/hostedservices/ps-svc/deployments"), &deployment("classic-vnet"), Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    classic_wait(&lab, &h).await;
    let (_, _, dep) = classic(&lab, Method::GET, &format!("/{SUB}/services/hostedservices/ps-svc?embed-detail=true"), "", Some(CLASSIC_VERSION)).await;
    assert!(dep.contains("<RoleName>ps02</RoleName>") && dep.contains("<PowerState>Started</PowerState>") && dep.contains("<VirtualNetworkName>classic-vnet</VirtualNetworkName>"), "{dep}");

    let (s, _, err) = classic(&lab, Method::GET, &format!("/{SUB}/services/hostedservices/nope"), "", Some(CLASSIC_VERSION)).await;
    assert_eq!((s, error_code_xml(&err).as_str()), (StatusCode::NOT_FOUND, "ResourceNotFound"));
}

#[tokio::test]
async fn injected_faults_throttle_fail_and_delay() {
    let lab = lab();
    let arm = arm(&lab).await;
    let rg = format!("/subscriptions/{SUB}/resourceGroups/rg-dr");
    let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/web01");

    lab.inject(Fault::throttle(Service::ResourceManager, 7).times(2).method("GET"));
    for _ in 0..2 {
        let (s, h, v) = arm.call(Method::GET, &vm, None).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(h["retry-after"], "7");
        assert_eq!(err_code(&v), "TooManyRequests");
    }
    assert_eq!(arm.call(Method::GET, &vm, None).await.0, StatusCode::OK);
    let seen: Vec<u16> = lab.requests().iter().filter(|r| r.service == Service::ResourceManager && r.path.ends_with("/web01")).map(|r| r.status).collect();
    assert_eq!(seen, [429, 429, 200], "the request log shows what the client experienced");

    lab.inject(Fault::server_error(Service::ResourceManager, 500));
    let (s, _, v) = arm.call(Method::GET, &vm, None).await;
    assert_eq!((s, err_code(&v)), (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"));

    // A failed long-running operation: the power-off fails and the VM keeps running.
    lab.inject(Fault::fail_operation(Service::ResourceManager, "InternalExecutionError", "An internal execution error occurred.").path_contains("/powerOff"));
    let (s, h, _) = arm.call(Method::POST, &format!("{vm}/powerOff"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (status, _) = arm.wait(&h).await;
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"]["code"], "InternalExecutionError");
    let (loc_status, body, _) = arm.wait_location(&h).await;
    assert_eq!((loc_status, err_code(&body)), (StatusCode::INTERNAL_SERVER_ERROR, "InternalExecutionError"));
    assert_eq!(arm.power_state("rg-dr", "web01").await, "PowerState/running");
    assert_eq!(lab.vm_power_state(SUB, "rg-dr", "web01").unwrap(), "running");

    // Blob service: 503 then success.
    let acct = lab.credentials().storage_account;
    lab.inject(Fault::server_error(Service::Blob, 503));
    let r = blob(&lab, Method::PUT, &format!("/{acct}/f?restype=container"), &[], vec![], None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["x-ms-error-code"], "ServiceUnavailable");
    assert_eq!(blob(&lab, Method::PUT, &format!("/{acct}/f?restype=container"), &[], vec![], None).await.status(), StatusCode::CREATED);
    lab.inject(Fault::throttle(Service::Blob, 3));
    let r = blob(&lab, Method::GET, &format!("/{acct}/f?restype=container"), &[], vec![], None).await;
    assert_eq!((r.status(), r.headers()["retry-after"].to_str().unwrap()), (StatusCode::TOO_MANY_REQUESTS, "3"));
    assert_eq!(r.headers()["x-ms-error-code"], "ServerBusy");

    // Classic: throttled, then a failed operation reported through operation status.
    lab.inject(Fault::throttle(Service::Classic, 2));
    let (s, h, err) = classic(&lab, Method::GET, &format!("/{SUB}/services/hostedservices"), "", Some(CLASSIC_VERSION)).await;
    assert_eq!((s, h["retry-after"].to_str().unwrap(), error_code_xml(&err).as_str()), (StatusCode::TOO_MANY_REQUESTS, "2", "TooManyRequests"));
    lab.inject(Fault::fail_operation(Service::Classic, "InternalError", "The server encountered an internal error."));
    let ops = format!("/{SUB}/services/hostedservices/legacy-svc/deployments/legacy-svc/roleinstances/app01/Operations");
    let body = "<ShutdownRoleOperation><OperationType>ShutdownRoleOperation</OperationType><PostShutdownAction>Stopped</PostShutdownAction></ShutdownRoleOperation>";
    let (s, h, _) = classic(&lab, Method::POST, &ops, body, Some(CLASSIC_VERSION)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (done, _) = classic_wait(&lab, &h).await;
    assert!(done.contains("<Status>Failed</Status>") && done.contains("<Code>InternalError</Code>"), "{done}");
    assert_eq!(lab.classic_role_state(SUB, "legacy-svc", "app01").unwrap(), ("Started".into(), "ReadyRole".into()));

    // A dropped connection gives the client a transport error, then service resumes.
    lab.inject(Fault::drop_connection(Service::ResourceManager).path_contains("web01"));
    let c = Client::new();
    let url = format!("{}{vm}?{API}", lab.endpoints().resource_manager);
    let dropped = c.get(&url).bearer_auth(&arm.token).send().await;
    assert!(dropped.is_err(), "no response expected, got {:?}", dropped.map(|r| r.status()));
    assert_eq!(c.get(&url).bearer_auth(&arm.token).send().await.unwrap().status(), StatusCode::OK);

    // Latency delays but does not change the answer; the fault is used up.
    lab.inject(Fault::latency(Service::Login, Duration::from_millis(200)));
    assert_eq!(lab.pending_faults(), 1);
    let _ = token(&Client::new(), &lab).await;
    assert_eq!(lab.pending_faults(), 0);

    // Login throttling uses the identity platform's JSON.
    lab.inject(Fault::throttle(Service::Login, 1));
    let cred = lab.credentials();
    let r = Client::new().post(lab.endpoints().token_url(&cred.tenant_id)).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "temporarily_unavailable");
}

#[test]
fn lab_handle_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<AzureLab>();
}

#[test]
fn lab_api_validates_guest_io_and_spec() {
    let lab = lab();
    let disks = lab.classic_vm_disks(SUB, "legacy-svc", "app01").unwrap();
    assert_eq!(disks.len(), 2);
    let os = &disks[0].id;
    assert!(matches!(lab.write_disk(os, 100, &[0; 512]), Err(homeward_lab::azure::LabError::InvalidRange { .. })));
    assert!(matches!(lab.write_disk(os, 16 << 20, &[0; 512]), Err(homeward_lab::azure::LabError::InvalidRange { .. })), "the footer is not guest-writable");
    lab.write_disk(os, 512, &pattern(1, 512)).unwrap();
    assert_eq!(lab.read_disk(os, 512, 512).unwrap(), pattern(1, 512));
    lab.clear_disk(os, 512, 512).unwrap();
    assert_eq!(lab.read_disk(os, 512, 512).unwrap(), vec![0; 512]);
    assert!(matches!(lab.vm_disks(SUB, "rg-dr", "nope"), Err(homeward_lab::azure::LabError::NotFound { .. })));
    let bad = homeward_lab::azure::LabSpec::from_toml("[[subscriptions]]\nid = \"s\"\n[[subscriptions.resource_groups]]\nname = \"g\"\nlocation = \"x\"\n[[subscriptions.resource_groups.vms]]\nname = \"v\"\nnetwork = \"missing\"\nsubnet = \"s\"\n").unwrap();
    assert!(matches!(lab.apply_spec(&bad), Err(homeward_lab::azure::LabError::Spec(m)) if m.contains("missing")));
    let endpoints = lab.endpoints().clone();
    drop(lab);
    // Dropping the handle stops every listener.
    let port = endpoints.resource_manager.rsplit(':').next().unwrap().to_string();
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
}
