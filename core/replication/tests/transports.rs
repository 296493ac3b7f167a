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
    transport::{FileTransport, HttpRangeTransport, Locator, MemoryTransport, PageBlobTransport, Transport, open_locator},
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
async fn copy_never_writes_holes_or_zero_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("src.img");
    let src = FileTransport::create(&src_path, 64 << 20).unwrap();
    src.write_at(10 << 20, Bytes::from(vec![9u8; 1 << 20])).await.unwrap();
    src.write_at(40 << 20, Bytes::from(vec![0u8; 1 << 20])).await.unwrap(); // allocated zeros
    let dst = FileTransport::create(dir.path().join("dst.img"), 64 << 20).unwrap();
    let report = copy_allocated(&src, &dst, None).await.unwrap();
    assert_eq!(report.bytes_written, 1 << 20);
    let dst_alloc: u64 = dst.allocated_extents().await.unwrap().iter().map(|e| e.len).sum();
    assert!(dst_alloc <= 2 << 20, "target stays sparse: {dst_alloc}");
    assert_eq!(std::fs::read(&src_path).unwrap(), std::fs::read(dir.path().join("dst.img")).unwrap());
    let _ = Arc::new(MemoryTransport::new("unused", 1)) as Arc<dyn Transport>;
}
