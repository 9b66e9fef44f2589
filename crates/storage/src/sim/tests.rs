use super::*;

fn setup() -> (SimFs, PathBuf) {
    let fs = SimFs::new();
    let dir = PathBuf::from("/d");
    fs.create_dir_all(&dir).unwrap();
    (fs, dir)
}

#[test]
fn unsynced_bytes_and_names_are_lost_in_a_crash() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    a.write_all_at(0, b"hello").unwrap();
    a.sync_data().unwrap();
    fs.sync_dir(&dir).unwrap();
    a.write_all_at(5, b" world").unwrap();
    let b = fs.create_new(&dir.join("b")).unwrap();
    b.write_all_at(0, b"x").unwrap();
    b.sync_data().unwrap();
    fs.crash(CrashMode::DropUnsynced);
    assert_eq!(fs.read_file(&dir.join("a")).unwrap(), b"hello");
    assert!(!fs.exists(&dir.join("b")), "b's name was never synced");
}

#[test]
fn torn_tail_keeps_a_prefix_of_the_unsynced_append() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    fs.sync_dir(&dir).unwrap();
    a.write_all_at(0, b"0123456789").unwrap();
    fs.crash(CrashMode::TornTail { seed: 7 });
    let got = fs.read_file(&dir.join("a")).unwrap();
    assert!(b"0123456789".starts_with(&got));
}

#[test]
fn rename_is_durable_only_after_the_directory_sync() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    a.sync_data().unwrap();
    fs.sync_dir(&dir).unwrap();
    fs.rename(&dir.join("a"), &dir.join("b")).unwrap();
    fs.crash(CrashMode::DropUnsynced);
    assert!(fs.exists(&dir.join("a")));
    assert!(!fs.exists(&dir.join("b")));
}

#[test]
fn a_directory_rename_carries_its_durable_contents_once_the_parent_is_synced() {
    let (fs, dir) = setup();
    let sub = dir.join("shard");
    fs.create_dir_all(&sub).unwrap();
    let a = fs.create_new(&sub.join("a")).unwrap();
    a.write_all_at(0, b"kept").unwrap();
    a.sync_data().unwrap();
    fs.sync_dir(&sub).unwrap();
    let gone = dir.join("shard.deleted");
    fs.rename(&sub, &gone).unwrap();
    assert!(fs.exists(&gone.join("a")) && !fs.exists(&sub));
    fs.crash(CrashMode::DropUnsynced);
    assert_eq!(
        fs.read_file(&sub.join("a")).unwrap(),
        b"kept",
        "rename not synced"
    );
    fs.rename(&sub, &gone).unwrap();
    fs.sync_dir(&dir).unwrap();
    fs.crash(CrashMode::DropUnsynced);
    assert_eq!(fs.read_file(&gone.join("a")).unwrap(), b"kept");
    assert!(!fs.exists(&sub));
}

#[test]
fn planned_faults_fire_once_on_the_nth_operation() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    fs.fail_nth_write(1, io::ErrorKind::StorageFull, None);
    a.write_all_at(0, b"ok").unwrap();
    let err = a.write_all_at(2, b"no").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    a.write_all_at(2, b"ok").unwrap();
    fs.fail_nth_sync(0, io::ErrorKind::Other);
    assert!(a.sync_data().is_err());
    a.sync_data().unwrap();
}

#[test]
fn a_torn_write_lands_its_prefix_then_fails() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    fs.fail_nth_write(0, io::ErrorKind::Other, Some(3));
    assert!(a.write_all_at(0, b"abcdef").is_err());
    assert_eq!(fs.read_file(&dir.join("a")).unwrap(), b"abc");
}

#[test]
fn power_cut_fails_everything_until_the_crash() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    fs.sync_dir(&dir).unwrap();
    fs.power_cut_after(1, Some(2));
    a.write_all_at(0, b"one").unwrap();
    assert!(a.write_all_at(3, b"two").is_err());
    assert!(a.sync_data().is_err());
    assert!(fs.is_powered_off());
    fs.crash(CrashMode::DropUnsynced);
    assert_eq!(fs.read_file(&dir.join("a")).unwrap(), b"");
    a.write_all_at(0, b"back").unwrap();
}

const LONG: std::time::Duration = std::time::Duration::from_secs(60);

#[test]
fn a_sync_gate_holds_syncs_until_released_in_arrival_order() {
    let (fs, dir) = setup();
    let files: Vec<_> = (0..2)
        .map(|i| fs.create_new(&dir.join(format!("f{i}"))).unwrap())
        .collect();
    fs.sync_dir(&dir).unwrap();
    for f in &files {
        f.write_all_at(0, b"x").unwrap();
    }
    let gate = fs.gate_syncs();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| files[0].sync_data());
        assert!(gate.wait_arrived(1, LONG));
        let second = scope.spawn(|| files[1].sync_data());
        assert!(gate.wait_arrived(2, LONG));
        assert_eq!(gate.passed(), 0, "nothing passes a closed gate");
        // The first sync to arrive is the first let through.
        gate.release(1);
        assert!(gate.wait_passed(1, LONG));
        assert_eq!(fs.lock().inode(0).unwrap().durable, b"x");
        assert!(fs.lock().inode(1).unwrap().durable.is_empty());
        drop(gate);
        first.join().unwrap().unwrap();
        second.join().unwrap().unwrap();
    });
}

#[test]
fn a_gated_write_lands_a_prefix_a_sync_can_make_durable_before_the_rest() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    fs.sync_dir(&dir).unwrap();
    let gate = fs.gate_next_write(3);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| a.write_all_at(0, b"abcdef"));
        assert!(gate.wait_arrived(1, LONG));
        assert_eq!(fs.read_file(&dir.join("a")).unwrap(), b"abc");
        a.sync_data().unwrap();
        // The power goes before the rest lands: the rest fails, the prefix stays.
        fs.power_cut_after(0, None);
        gate.release(1);
        assert!(writer.join().unwrap().is_err());
    });
    fs.crash(CrashMode::DropUnsynced);
    assert_eq!(fs.read_file(&dir.join("a")).unwrap(), b"abc");
    // Only the next write was gated.
    a.write_all_at(3, b"def").unwrap();
}

#[test]
fn syncfs_flushes_nothing_unless_the_disk_is_told_it_does() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    fs.sync_dir(&dir).unwrap();
    a.write_all_at(0, b"lost").unwrap();
    a.sync_filesystem().unwrap();
    assert!(!fs.fs_info(&dir).unwrap().syncfs_flushes_data);
    fs.crash(CrashMode::DropUnsynced);
    assert_eq!(fs.read_file(&dir.join("a")).unwrap(), b"");
    fs.set_syncfs_flushes(true);
    a.write_all_at(0, b"kept").unwrap();
    a.sync_filesystem().unwrap();
    fs.crash(CrashMode::DropUnsynced);
    assert_eq!(fs.read_file(&dir.join("a")).unwrap(), b"kept");
}

#[test]
fn a_planned_open_fault_fails_one_open_create_or_map() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    fs.fail_nth_open(1, io::ErrorKind::Other);
    fs.open(&dir.join("a")).unwrap();
    assert!(a.map(0).is_err());
    a.map(0).unwrap();
    fs.fail_nth_open(0, io::ErrorKind::Other);
    assert!(fs.create_new(&dir.join("b")).is_err());
    assert!(!fs.exists(&dir.join("b")));
}

#[test]
fn disk_full_refuses_growth_but_not_overwrites() {
    let (fs, dir) = setup();
    let a = fs.create_new(&dir.join("a")).unwrap();
    a.write_all_at(0, b"abc").unwrap();
    fs.set_disk_full(true);
    assert_eq!(
        a.write_all_at(3, b"d").unwrap_err().kind(),
        io::ErrorKind::StorageFull
    );
    a.write_all_at(0, b"x").unwrap();
}
