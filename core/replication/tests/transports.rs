//! The HTTP-range and page-blob transports against a loopback server speaking their wire
//! semantics, and the file transport's sparseness end to end.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{Rng, fake_endpoints::Server};
use homeward_replication::{
    TransportError,
    copy::copy_allocated,
    extent::Extent,
    resync::{ResyncOptions, Verified, resync},
    transport::{
        AdapterLocator, DiskFormat, FileTransport, HttpRangeTransport, Locator, MemoryTransport, PageBlobTransport, Transport,
        open_adapter_locator, open_locator,
    },
};

fn url(server: &Server, path: &str) -> reqwest::Url {
    reqwest::Url::parse(&format!("http://{}{path}", server.addr)).unwrap()
}

#[tokio::test]
async fn http_range_reads_writes_and_refuses_past_the_end() {
    let server = Server::start().await;
    let mut rng = Rng(7);
    let original = rng.bytes(3 << 20);
    server.put_file("/folder/vm/disk-flat.vmdk", original.clone());
    let disk = HttpRangeTransport::new(reqwest::Client::new(), url(&server, "/folder/vm/disk-flat.vmdk"));
    assert_eq!(disk.size().await.unwrap(), 3 << 20);
    assert_eq!(disk.allocated_extents().await.unwrap(), vec![Extent::new(0, 3 << 20)]);
    assert_eq!(&disk.read_at(1000, 5000).await.unwrap()[..], &original[1000..6000]);
    let patch = rng.bytes(100_000);
    disk.write_at(12345, Bytes::from(patch.clone())).await.unwrap();
    disk.write_zeroes(2 << 20, 777).await.unwrap();
    let mut expected = original;
    expected[12345..112345].copy_from_slice(&patch);
    expected[2 << 20..(2 << 20) + 777].fill(0);
    assert_eq!(server.file("/folder/vm/disk-flat.vmdk"), expected);
    let err = disk.read_at((3 << 20) - 10, 20).await.unwrap_err();
    assert!(matches!(err, TransportError::Invalid { .. }), "{err:?}");
    let missing = HttpRangeTransport::new(reqwest::Client::new(), url(&server, "/folder/nope"));
    assert!(matches!(missing.size().await.unwrap_err(), TransportError::Http { status: 404, .. }));
}

#[tokio::test]
async fn page_blob_writes_aligned_pages_of_at_most_4_mib_and_lists_ranges() {
    let server = Server::start().await;
    server.create_blob("disk.vhd", 16 << 20);
    let blob = PageBlobTransport::new(reqwest::Client::new(), url(&server, "/blob/disk.vhd?sv=2021&sig=secret"));
    assert_eq!(blob.size().await.unwrap(), 16 << 20);
    assert!(blob.allocated_extents().await.unwrap().is_empty());
    let mut rng = Rng(9);
    let big = rng.bytes(9 << 20);
    blob.write_at(1 << 20, Bytes::from(big.clone())).await.unwrap();
    // Unaligned: the edge pages are read, patched and written whole.
    blob.write_at(100, Bytes::from_static(b"hello")).await.unwrap();
    blob.write_at(15 << 20, Bytes::from(vec![5u8; 512])).await.unwrap();
    blob.write_at(14 << 20, Bytes::from(vec![6u8; 512])).await.unwrap();
    {
        let s = server.store.lock().unwrap();
        assert_eq!(s.largest_put_page, 4 << 20);
    }
    assert_eq!(&blob.read_at(100, 5).await.unwrap()[..], b"hello");
    assert_eq!(&blob.read_at(1 << 20, 9 << 20).await.unwrap()[..], &big[..]);
    let ranges = blob.allocated_extents().await.unwrap();
    assert_eq!(
        ranges,
        vec![Extent::new(0, 512), Extent::new(1 << 20, 9 << 20), Extent::new(14 << 20, 512), Extent::new(15 << 20, 512)]
    );
    // Clearing whole pages deallocates them; partial pages are zero-filled.
    blob.write_zeroes((1 << 20) + 100, 2 << 20).await.unwrap();
    let after = blob.read_at(1 << 20, 9 << 20).await.unwrap();
    assert!(after[100..(2 << 20) + 100].iter().all(|b| *b == 0));
    assert_eq!(&after[(2 << 20) + 100..], &big[(2 << 20) + 100..]);
    assert!(server.store.lock().unwrap().put_pages.1 >= 1, "a Put Page clear was used");
    let allocated: u64 = blob.allocated_extents().await.unwrap().iter().map(|e| e.len).sum();
    assert!(allocated < (9 << 20) - (1 << 20));
    // The change-tracking form asks for a diff against the previous snapshot.
    let allocated_now = blob.allocated_extents().await.unwrap();
    let diff = blob.page_ranges(Some("2026-11-21T10:00:00.0000000Z")).await.unwrap();
    assert_eq!(diff.changed, allocated_now);
    assert!(server.store.lock().unwrap().last_pagelist_query.contains("prevsnapshot=2026-11-21T10%3A00%3A00.0000000Z"));
    let no_sas = PageBlobTransport::new(reqwest::Client::new(), url(&server, "/blob/disk.vhd"));
    match no_sas.size().await.unwrap_err() {
        TransportError::Http { status, target, .. } => {
            assert_eq!(status, 403);
            assert!(!target.contains("sig="), "SAS tokens never appear in errors");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sparse_file_copies_to_a_page_blob_and_resyncs_back_to_a_file() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let size = 8u64 << 20;
    let src_path = dir.path().join("src.img");
    let src = FileTransport::create(&src_path, size).unwrap();
    let mut rng = Rng(3);
    for _ in 0..6 {
        let off = rng.below(size / 65536 - 2) * 65536 + rng.below(1000);
        src.write_at(off, Bytes::from(rng.bytes(70_000))).await.unwrap();
    }
    server.create_blob("replica.vhd", size);
    let blob = open_locator(&Locator::PageBlob { url: format!("http://{}/blob/replica.vhd?sig=secret", server.addr) }, true).unwrap();
    let report = copy_allocated(&src, blob.as_ref(), None).await.unwrap();
    assert!(report.bytes_written <= report.bytes_read && report.bytes_read < size / 2, "{report:?}");
    let src_bytes = std::fs::read(&src_path).unwrap();
    assert_eq!(server.file("/blob/replica.vhd"), src_bytes);
    // Fail back: the file drifts, then is resynced from the blob by differing blocks only.
    src.write_at(3 << 20, Bytes::from(vec![1u8; 300])).await.unwrap();
    let report = resync(blob.as_ref(), &src, ResyncOptions { full_verify: true, ..Default::default() }, None).await.unwrap();
    assert_eq!(report.blocks_sent, 1);
    assert_eq!(report.verified, Verified::Identical);
    assert_eq!(std::fs::read(&src_path).unwrap(), server.file("/blob/replica.vhd"));
}

#[tokio::test]
async fn copy_never_writes_holes_or_zero_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("src.img");
    let src = FileTransport::create(&src_path, 64 << 20).unwrap();
    src.write_at(10 << 20, Bytes::from(vec![9u8; 1 << 20])).await.unwrap();
    src.write_at(40 << 20, Bytes::from(vec![0u8; 1 << 20])).await.unwrap(); // allocated zeros
    // Data with 128 KiB of zeros in the middle, and a short tail of data after them.
    let mut gappy = vec![5u8; 1 << 20];
    gappy[256 << 10..384 << 10].fill(0);
    src.write_at(20 << 20, Bytes::from(gappy)).await.unwrap();
    let dst = FileTransport::create(dir.path().join("dst.img"), 64 << 20).unwrap();
    let report = copy_allocated(&src, &dst, None).await.unwrap();
    assert_eq!(report.bytes_written, (2 << 20) - (128 << 10));
    let dst_extents = dst.allocated_extents().await.unwrap();
    let dst_alloc: u64 = dst_extents.iter().map(|e| e.len).sum();
    assert!(dst_alloc <= 2 << 20, "target stays sparse: {dst_alloc}");
    let zeros = ((20 << 20) + (256 << 10), (20 << 20) + (384 << 10));
    assert!(dst_extents.iter().all(|e| e.end() <= zeros.0 || e.offset >= zeros.1), "zeros inside data stay a hole: {dst_extents:?}");
    assert_eq!(std::fs::read(&src_path).unwrap(), std::fs::read(dir.path().join("dst.img")).unwrap());
    let _ = Arc::new(MemoryTransport::new("unused", 1)) as Arc<dyn Transport>;
}

/// A fixed VHD: `data` followed by a 512-byte footer of 0xCF bytes.
fn vhd(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.extend_from_slice(&[0xCF; 512]);
    v
}

#[tokio::test]
async fn an_http_locator_sends_its_headers_and_windows_a_vhd() {
    let server = Server::start().await;
    let mut rng = Rng(11);
    // A 4 KiB header before the disk, the disk, and the VHD footer.
    let disk = rng.bytes(2 << 20);
    let mut container = vec![0x11u8; 4096];
    container.extend_from_slice(&vhd(&disk));
    server.put_file("/auth/folder/vm/disk.vhd", container.clone());
    let url = format!("http://{}/auth/folder/vm/disk.vhd?dcPath=dc1", server.addr);
    let headers = vec![
        ("Cookie".to_string(), "vmware_soap_session=s3cr3t".to_string()),
        ("Authorization".to_string(), "Bearer t0ken".to_string()),
    ];
    let locator = AdapterLocator::HttpRange { url: url.clone(), headers: headers.clone(), format: DiskFormat::VhdFixed, data_offset: 4096 };
    let debug = format!("{locator:?}");
    assert!(!debug.contains("s3cr3t") && !debug.contains("t0ken") && debug.contains("Cookie"), "{debug}");

    // Without a capacity the window ends where the footer starts.
    let window = open_adapter_locator(&locator, None, true).await.unwrap();
    assert_eq!(window.size().await.unwrap(), 2 << 20);
    assert!(!format!("{window:?}").contains("s3cr3t"));
    assert_eq!(&window.read_at(0, 4096).await.unwrap()[..], &disk[..4096]);
    assert_eq!(window.allocated_extents().await.unwrap(), vec![Extent::new(0, 2 << 20)]);
    // Writes go through the window, headers and all, and never reach the footer.
    let patch = rng.bytes(70_000);
    window.write_at((2 << 20) - 70_000, Bytes::from(patch.clone())).await.unwrap();
    assert!(matches!(window.write_at((2 << 20) - 1, Bytes::from_static(b"xx")).await.unwrap_err(), TransportError::Invalid { .. }));
    let mut want = container;
    want[4096 + (2 << 20) - 70_000..4096 + (2 << 20)].copy_from_slice(&patch);
    assert_eq!(server.file("/auth/folder/vm/disk.vhd"), want);

    // A capacity that would swallow the footer is refused up front.
    let err = open_adapter_locator(&locator, Some((2 << 20) + 512), false).await.unwrap_err();
    assert!(matches!(err, TransportError::Invalid { .. }), "{err:?}");
    // Without the headers the endpoint refuses, and no header value shows in the error.
    let bare = HttpRangeTransport::new(reqwest::Client::new(), reqwest::Url::parse(&url).unwrap());
    assert!(matches!(bare.size().await.unwrap_err(), TransportError::Http { status: 401, .. }));
    let bad = vec![("Cookie".to_string(), "line\nbreak s3cr3t".to_string())];
    let err = HttpRangeTransport::with_headers(reqwest::Url::parse(&url).unwrap(), &bad).unwrap_err();
    assert!(!err.to_string().contains("s3cr3t") && err.to_string().contains("Cookie"), "{err}");
}

#[tokio::test]
async fn a_file_locator_with_a_data_offset_copies_and_resyncs_only_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let size = 4u64 << 20;
    let mut rng = Rng(12);
    let src_path = dir.path().join("src.vhd");
    let dst_path = dir.path().join("dst.img");
    // Source: a 64 KiB header, a sparse disk with a few extents, the footer.
    {
        let f = std::fs::File::create(&src_path).unwrap();
        f.set_len(65536 + size + 512).unwrap();
    }
    common::write_at(&src_path, 0, &[0x48; 65536]);
    common::write_at(&src_path, 65536 + size, &[0xCF; 512]);
    for at in [0u64, 1 << 20, (4 << 20) - 65536] {
        common::write_at(&src_path, 65536 + at, &rng.bytes(65536));
    }
    common::sparse(&dst_path, size);
    let src = open_adapter_locator(
        &AdapterLocator::File { path: src_path.clone(), format: DiskFormat::VhdFixed, data_offset: 65536 },
        Some(size),
        false,
    )
    .await
    .unwrap();
    let dst = open_adapter_locator(&AdapterLocator::File { path: dst_path.clone(), format: DiskFormat::Raw, data_offset: 0 }, None, true)
        .await
        .unwrap();
    let allocated = src.allocated_extents().await.unwrap();
    assert!(allocated.iter().all(|e| e.end() <= size), "{allocated:?}");
    let report = copy_allocated(&src, &dst, None).await.unwrap();
    assert!(report.bytes_read < size, "header, footer and holes are not read: {report:?}");
    let raw = std::fs::read(&src_path).unwrap();
    assert_eq!(std::fs::read(&dst_path).unwrap(), &raw[65536..65536 + size as usize]);
    // Fail back onto the container: only the differing block goes, the header and
    // footer stay as they were.
    common::write_at(&dst_path, 2 << 20, b"drift");
    let src_rw = open_adapter_locator(
        &AdapterLocator::File { path: src_path.clone(), format: DiskFormat::VhdFixed, data_offset: 65536 },
        None,
        true,
    )
    .await
    .unwrap();
    let r = resync(&dst, &src_rw, ResyncOptions { full_verify: true, ..Default::default() }, None).await.unwrap();
    assert_eq!((r.blocks_sent, r.verified), (1, Verified::Identical));
    let raw = std::fs::read(&src_path).unwrap();
    assert!(raw[..65536].iter().all(|b| *b == 0x48) && raw[65536 + size as usize..].iter().all(|b| *b == 0xCF));
    assert_eq!(&raw[65536..65536 + size as usize], &std::fs::read(&dst_path).unwrap()[..]);
}

#[tokio::test]
async fn page_ranges_of_a_vhd_blob_are_shifted_through_the_window() {
    let server = Server::start().await;
    // A managed disk: 8 MiB of disk and its footer in the last page.
    let size = 8u64 << 20;
    server.create_blob("os.vhd", size + 512);
    let url = format!("http://{}/blob/os.vhd?sv=2021&sig=secret", server.addr);
    let raw = PageBlobTransport::new(reqwest::Client::new(), reqwest::Url::parse(&url).unwrap());
    raw.write_at(size, Bytes::from(vec![0xCF; 512])).await.unwrap();
    let window = open_adapter_locator(&AdapterLocator::PageBlob { url, format: DiskFormat::VhdFixed }, None, true).await.unwrap();
    assert_eq!(window.size().await.unwrap(), size);
    assert!(window.allocated_extents().await.unwrap().is_empty(), "the footer is not disk data");
    window.write_at(4096, Bytes::from(vec![1u8; 1024])).await.unwrap();
    window.write_at(size - 512, Bytes::from(vec![2u8; 512])).await.unwrap();
    let want = vec![Extent::new(4096, 1024), Extent::new(size - 512, 512)];
    assert_eq!(window.allocated_extents().await.unwrap(), want);
    let diff = window.page_ranges(Some("2026-11-21T10:00:00.0000000Z")).await.unwrap();
    assert_eq!(diff.changed, want, "the footer page is clipped off the diff");
    assert!(diff.cleared.is_empty());
    // The same diff seen through a window with a data offset is shifted.
    let shifted = raw.page_ranges(None).await.unwrap().windowed(4096, size - 4096);
    assert_eq!(shifted.changed, vec![Extent::new(0, 1024), Extent::new(size - 4096 - 512, 512)]);
    assert_eq!(&server.file("/blob/os.vhd")[size as usize..], &[0xCF; 512][..]);
}
