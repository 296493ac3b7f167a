//! Native disk transports: trusted shared libraries (a vendor's VDDK-like disk library)
//! loaded with `libloading`, behind a small versioned C ABI.
//!
//! They are native code in the host's address space, so nothing sandboxes them: the
//! operator must say `trusted = true` and pin the library's sha256, and the host refuses
//! the library otherwise. The ABI version symbol is checked before any other symbol is
//! even looked up.
//!
//! The ABI (version 1); every function returns 0 or a negative errno unless noted:
//! ```c
//! uint32_t homeward_transport_abi_version(void);            /* must return 1 */
//! int32_t  homeward_transport_open(const char *locator, uint32_t writable,
//!                                  void **handle, char *err, size_t err_len);
//! int32_t  homeward_transport_read(void *h, uint64_t off, uint8_t *buf, size_t len);
//! int32_t  homeward_transport_write(void *h, uint64_t off, const uint8_t *buf, size_t len);
//! int32_t  homeward_transport_flush(void *h);
//! int32_t  homeward_transport_size(void *h, uint64_t *size);
//! int32_t  homeward_transport_allocated_extents(void *h, uint64_t start,
//!              homeward_extent *out, size_t cap, size_t *count);  /* count 0: done */
//! void     homeward_transport_close(void *h);
//! typedef struct { uint64_t offset, length; } homeward_extent;
//! ```
//! A handle is used by one thread at a time; the host never calls it concurrently.

use std::ffi::{CString, c_char, c_void};
use std::path::PathBuf;
use std::sync::Arc;

use libloading::Library;

use crate::hash::{normalise_pin, sha256_file};

/// The ABI version this host speaks.
pub const ABI_VERSION: u32 = 1;

/// One allocated extent, as the ABI lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativeExtent {
    pub offset: u64,
    pub length: u64,
}

/// The operator's config for one native transport (`[transports.NAME]`).
#[derive(Debug, Clone)]
pub struct NativeTransportSpec {
    pub name: String,
    pub path: PathBuf,
    pub sha256: Option<String>,
    pub trusted: bool,
}

/// Why a native transport was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error(
        "transport `{name}`: {path} is native code that runs unsandboxed inside homeward; review it, then set trusted = true in [transports.{name}]"
    )]
    NotTrusted { name: String, path: PathBuf },
    #[error("transport `{name}`: no sha256 pin; add sha256 = \"{actual}\" to [transports.{name}] after checking it is the library you reviewed")]
    MissingPin { name: String, actual: String },
    #[error("transport `{name}`: {path} has sha256 {actual}, but the config pins {expected}; the library changed since it was trusted")]
    HashMismatch { name: String, path: PathBuf, expected: String, actual: String },
    #[error("transport `{name}`: cannot read {path}: {source}")]
    Read { name: String, path: PathBuf, source: std::io::Error },
    #[error("transport `{name}`: cannot load {path}: {message}")]
    Load { name: String, path: PathBuf, message: String },
    #[error("transport `{name}`: the library does not export `{symbol}`; it is not a Homeward transport (ABI {ABI_VERSION})")]
    MissingSymbol { name: String, symbol: &'static str },
    #[error("transport `{name}`: the library speaks transport ABI {found}, but this host speaks {supported}; use a build of the library for ABI {supported}")]
    AbiMismatch { name: String, found: u32, supported: u32 },
    #[error("transport `{name}`: cannot open `{locator}`: {message}")]
    Open { name: String, locator: String, message: String },
    #[error("transport `{name}`: {op} failed with errno {errno}")]
    Io { name: String, op: &'static str, errno: i32 },
}

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type OpenFn = unsafe extern "C" fn(*const c_char, u32, *mut *mut c_void, *mut c_char, usize) -> i32;
type ReadFn = unsafe extern "C" fn(*mut c_void, u64, *mut u8, usize) -> i32;
type WriteFn = unsafe extern "C" fn(*mut c_void, u64, *const u8, usize) -> i32;
type FlushFn = unsafe extern "C" fn(*mut c_void) -> i32;
type SizeFn = unsafe extern "C" fn(*mut c_void, *mut u64) -> i32;
type ExtentsFn = unsafe extern "C" fn(*mut c_void, u64, *mut NativeExtent, usize, *mut usize) -> i32;
type CloseFn = unsafe extern "C" fn(*mut c_void);

#[derive(Clone, Copy)]
struct Functions {
    open: OpenFn,
    read: ReadFn,
    write: WriteFn,
    flush: FlushFn,
    size: SizeFn,
    extents: ExtentsFn,
    close: CloseFn,
}

/// A loaded, verified native transport library.
pub struct NativeTransport {
    name: String,
    sha256: String,
    functions: Functions,
    // Keeps the code mapped for as long as any disk opened through it lives.
    library: Arc<Library>,
}

impl std::fmt::Debug for NativeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeTransport").field("name", &self.name).field("sha256", &self.sha256).finish()
    }
}

fn symbol<T: Copy>(library: &Library, name: &str, symbol: &'static str) -> Result<T, NativeError> {
    // SAFETY: the symbol's type is fixed by the ABI documented above; the library was
    // pinned and marked trusted by the operator.
    unsafe { library.get::<T>(symbol.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| NativeError::MissingSymbol { name: name.to_string(), symbol })
}

impl NativeTransport {
    /// Verifies trust and pin, loads the library, and checks its ABI version before
    /// resolving anything else.
    pub fn load(spec: &NativeTransportSpec) -> Result<NativeTransport, NativeError> {
        let name = spec.name.clone();
        let actual = sha256_file(&spec.path).map_err(|source| NativeError::Read { name: name.clone(), path: spec.path.clone(), source })?;
        if !spec.trusted {
            return Err(NativeError::NotTrusted { name, path: spec.path.clone() });
        }
        let expected = match &spec.sha256 {
            Some(pin) => normalise_pin(pin),
            None => return Err(NativeError::MissingPin { name, actual }),
        };
        if expected != actual {
            return Err(NativeError::HashMismatch { name, path: spec.path.clone(), expected, actual });
        }
        // SAFETY: loading runs the library's initialisers. The operator declared the
        // library trusted and pinned the exact bytes we just hashed.
        let library = unsafe { Library::new(&spec.path) }
            .map_err(|e| NativeError::Load { name: name.clone(), path: spec.path.clone(), message: e.to_string() })?;
        let version: AbiVersionFn = symbol(&library, &name, "homeward_transport_abi_version")?;
        // SAFETY: a plain function of no arguments, per the ABI.
        let found = unsafe { version() };
        if found != ABI_VERSION {
            return Err(NativeError::AbiMismatch { name, found, supported: ABI_VERSION });
        }
        let functions = Functions {
            open: symbol(&library, &name, "homeward_transport_open")?,
            read: symbol(&library, &name, "homeward_transport_read")?,
            write: symbol(&library, &name, "homeward_transport_write")?,
            flush: symbol(&library, &name, "homeward_transport_flush")?,
            size: symbol(&library, &name, "homeward_transport_size")?,
            extents: symbol(&library, &name, "homeward_transport_allocated_extents")?,
            close: symbol(&library, &name, "homeward_transport_close")?,
        };
        Ok(NativeTransport { name, sha256: actual, functions, library: Arc::new(library) })
    }

    /// The transport's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verified sha256 of the library.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Opens a disk by a locator string the library understands (a path, a URL).
    pub fn open(&self, locator: &str, writable: bool) -> Result<NativeDisk, NativeError> {
        let open_err = |message: String| NativeError::Open { name: self.name.clone(), locator: locator.to_string(), message };
        let c_locator = CString::new(locator).map_err(|_| open_err("the locator contains a NUL byte".into()))?;
        let mut handle: *mut c_void = std::ptr::null_mut();
        let mut err = vec![0 as c_char; 512];
        // SAFETY: pointers are valid for the call; `err` has the length we pass.
        let rc = unsafe { (self.functions.open)(c_locator.as_ptr(), u32::from(writable), &mut handle, err.as_mut_ptr(), err.len()) };
        if rc != 0 || handle.is_null() {
            // SAFETY: the library writes a NUL-terminated message within `err_len`; the
            // last byte stays 0 regardless.
            let last = err.len() - 1;
            err[last] = 0;
            let message = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
            return Err(open_err(if message.is_empty() { format!("errno {}", -rc) } else { message }));
        }
        Ok(NativeDisk { name: self.name.clone(), handle, functions: self.functions, _library: self.library.clone() })
    }
}

/// A disk opened through a native transport. Closed on drop.
pub struct NativeDisk {
    name: String,
    handle: *mut c_void,
    functions: Functions,
    _library: Arc<Library>,
}

// SAFETY: the ABI requires a handle to be usable from any thread, one call at a time;
// `NativeDisk` is not `Sync`, and every method takes `&mut self`.
unsafe impl Send for NativeDisk {}

impl NativeDisk {
    fn check(&self, op: &'static str, rc: i32) -> Result<(), NativeError> {
        if rc == 0 { Ok(()) } else { Err(NativeError::Io { name: self.name.clone(), op, errno: -rc }) }
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NativeError> {
        // SAFETY: `buf` is valid for writes of its length.
        let rc = unsafe { (self.functions.read)(self.handle, offset, buf.as_mut_ptr(), buf.len()) };
        self.check("read", rc)
    }

    /// Writes all of `data` at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), NativeError> {
        // SAFETY: `data` is valid for reads of its length.
        let rc = unsafe { (self.functions.write)(self.handle, offset, data.as_ptr(), data.len()) };
        self.check("write", rc)
    }

    /// Makes written data durable.
    pub fn flush(&mut self) -> Result<(), NativeError> {
        // SAFETY: a live handle.
        let rc = unsafe { (self.functions.flush)(self.handle) };
        self.check("flush", rc)
    }

    /// The disk's size in bytes.
    pub fn size(&mut self) -> Result<u64, NativeError> {
        let mut size = 0u64;
        // SAFETY: `size` is a valid out-pointer.
        let rc = unsafe { (self.functions.size)(self.handle, &mut size) };
        self.check("size", rc).map(|_| size)
    }

    /// Every allocated extent, in order.
    pub fn allocated_extents(&mut self) -> Result<Vec<NativeExtent>, NativeError> {
        let mut all = Vec::new();
        let mut start = 0u64;
        let mut page = vec![NativeExtent::default(); 1024];
        loop {
            let mut count = 0usize;
            // SAFETY: `page` is valid for `page.len()` extents and `count` is an out-pointer.
            let rc = unsafe { (self.functions.extents)(self.handle, start, page.as_mut_ptr(), page.len(), &mut count) };
            self.check("allocated_extents", rc)?;
            let count = count.min(page.len());
            if count == 0 {
                return Ok(all);
            }
            let last = page[count - 1];
            all.extend_from_slice(&page[..count]);
            let next = last.offset + last.length;
            if next <= start {
                return Ok(all);
            }
            start = next;
        }
    }
}

impl Drop for NativeDisk {
    fn drop(&mut self) {
        // SAFETY: the handle is live and closed exactly once.
        unsafe { (self.functions.close)(self.handle) };
    }
}
