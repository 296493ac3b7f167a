//! An example native disk transport: a sparse local file behind Homeward's transport C ABI
//! (version 1, documented in `homeward_plugin_host::native` and `homeward_transport.h`).
//!
//! The locator is a file path. Allocated extents come from `SEEK_DATA`/`SEEK_HOLE`, so the
//! host never reads the holes of a sparse disk.

use std::ffi::{CStr, c_char, c_void};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// One allocated extent, as the ABI lays it out.
#[repr(C)]
pub struct HomewardExtent {
    pub offset: u64,
    pub length: u64,
}

struct Disk {
    file: File,
}

fn errno_of(e: &std::io::Error) -> i32 {
    -e.raw_os_error().unwrap_or(libc::EIO)
}

/// The ABI version this library speaks.
#[unsafe(no_mangle)]
pub extern "C" fn homeward_transport_abi_version() -> u32 {
    1
}

/// Opens the file named by `locator`.
///
/// # Safety
/// `locator` is a NUL-terminated string; `handle` is a valid out-pointer; `err` is valid
/// for `err_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn homeward_transport_open(
    locator: *const c_char,
    writable: u32,
    handle: *mut *mut c_void,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    let path = unsafe { CStr::from_ptr(locator) }.to_string_lossy().into_owned();
    match OpenOptions::new().read(true).write(writable != 0).open(&path) {
        Ok(file) => {
            unsafe { *handle = Box::into_raw(Box::new(Disk { file })).cast() };
            0
        }
        Err(e) => {
            let message = format!("{path}: {e}");
            let n = message.len().min(err_len.saturating_sub(1));
            unsafe {
                std::ptr::copy_nonoverlapping(message.as_ptr().cast::<c_char>(), err, n);
                *err.add(n) = 0;
            }
            errno_of(&e)
        }
    }
}

fn disk<'a>(h: *mut c_void) -> &'a Disk {
    unsafe { &*h.cast::<Disk>() }
}

/// Reads `len` bytes at `off`; past the end reads zeros.
///
/// # Safety
/// `h` is a live handle and `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn homeward_transport_read(h: *mut c_void, off: u64, buf: *mut u8, len: usize) -> i32 {
    let buf = unsafe { std::slice::from_raw_parts_mut(buf, len) };
    let mut done = 0;
    while done < len {
        match disk(h).file.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                break;
            }
            Ok(n) => done += n,
            Err(e) => return errno_of(&e),
        }
    }
    0
}

/// Writes `len` bytes at `off`.
///
/// # Safety
/// `h` is a live handle and `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn homeward_transport_write(h: *mut c_void, off: u64, buf: *const u8, len: usize) -> i32 {
    let data = unsafe { std::slice::from_raw_parts(buf, len) };
    match disk(h).file.write_all_at(data, off) {
        Ok(()) => 0,
        Err(e) => errno_of(&e),
    }
}

/// Makes writes durable.
///
/// # Safety
/// `h` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn homeward_transport_flush(h: *mut c_void) -> i32 {
    match disk(h).file.sync_data() {
        Ok(()) => 0,
        Err(e) => errno_of(&e),
    }
}

/// The file's size.
///
/// # Safety
/// `h` is a live handle and `size` a valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn homeward_transport_size(h: *mut c_void, size: *mut u64) -> i32 {
    match disk(h).file.metadata() {
        Ok(m) => {
            unsafe { *size = m.len() };
            0
        }
        Err(e) => errno_of(&e),
    }
}

/// Up to `cap` allocated extents from `start` on; `*count = 0` means no more.
///
/// # Safety
/// `h` is a live handle, `out` is valid for `cap` extents, `count` a valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn homeward_transport_allocated_extents(
    h: *mut c_void,
    start: u64,
    out: *mut HomewardExtent,
    cap: usize,
    count: *mut usize,
) -> i32 {
    let file = &disk(h).file;
    let size = match file.metadata() {
        Ok(m) => m.len() as i64,
        Err(e) => return errno_of(&e),
    };
    let fd = file.as_raw_fd();
    let mut pos = start as i64;
    let mut n = 0usize;
    while n < cap && pos < size {
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            // ENXIO: no data past `pos`.
            break;
        }
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { hole };
        unsafe { out.add(n).write(HomewardExtent { offset: data as u64, length: (end - data) as u64 }) };
        n += 1;
        pos = end;
    }
    unsafe { *count = n };
    0
}

/// Closes a handle.
///
/// # Safety
/// `h` is a live handle, closed exactly once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn homeward_transport_close(h: *mut c_void) {
    drop(unsafe { Box::from_raw(h.cast::<Disk>()) });
}
