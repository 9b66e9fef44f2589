use super::*;
use crate::CreateStream;
use sluice_storage::{SegmentCache, SimFs};

#[test]
fn try_route_agrees_with_route_and_refuses_while_the_catalogue_is_held() {
    let now = TimestampMs(1_000);
    let m = ShardManager::open(
        SimFs::new().shared(),
        Path::new("/data"),
        ManagerConfig::default(),
        SegmentCache::new(8),
        now,
    )
    .unwrap();
    m.create_stream(&CreateStream::new("s", 4), now).unwrap();
    assert!(
        m.try_route("s", RouteKey::PartitionKey(b"k"), now)
            .is_none(),
        "a shard never used has no log to append to without waiting"
    );
    for i in 0..64u32 {
        let key = format!("key-{i}");
        let a = m
            .route("s", RouteKey::PartitionKey(key.as_bytes()), now)
            .unwrap();
        let b = m
            .try_route("s", RouteKey::PartitionKey(key.as_bytes()), now)
            .unwrap()
            .unwrap();
        assert_eq!((a.shard, a.hash_key), (b.shard, b.hash_key));
        assert!(Arc::ptr_eq(&a.log, &b.log));
    }
    assert!(matches!(
        m.try_route("nope", RouteKey::PartitionKey(b"k"), now),
        Some(Err(Error::ResourceNotFound(_)))
    ));
    let held = m.write();
    assert!(
        m.try_route("s", RouteKey::PartitionKey(b"k"), now)
            .is_none()
    );
    drop(held);
    assert!(
        m.try_route("s", RouteKey::PartitionKey(b"k"), now)
            .is_some()
    );
}
