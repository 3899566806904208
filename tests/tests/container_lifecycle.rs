//! Containers through the library against a private containerd: import, run to an
//! exit code, logs, stop within the grace period, user lookup, bad inputs, 20 at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_container::cgroup::CgroupV1;
use roost_container::image::ImportOptions;
use roost_container::spec::BindMount;
use roost_container::task::{CheckError, State, TaskError};
use roost_tests::container::{busybox_layout, import_busybox, run_spec, socket, tar_dir, Ns};
use std::time::{Duration, Instant};

const IMG: &str = "roost.test/busybox:1";

#[tokio::test]
async fn import_from_layout_dir_and_tarball() {
    let Some(sock) = socket() else { return };
    let ns = Ns::new(&sock, "import").await;
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    busybox_layout(&layout, IMG);
    let tarball = t.path().join("img.tar");
    tar_dir(&layout, &tarball);
    let names = ns
        .client
        .image_import(
            &tarball,
            &ImportOptions {
                name: Some("roost.test/other:2".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(names, vec!["roost.test/other:2"]);
    let names = ns
        .client
        .image_import(&layout, &ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(names, vec![IMG]);
    let ls: Vec<String> = ns
        .client
        .image_list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(ls, vec![IMG.to_string(), "roost.test/other:2".to_string()]);
    // Unpacked: the command check can see /bin/sh inside the image.
    let r = ns.client.image_resolve(IMG).await.unwrap();
    let files = ns.client.image_files(&r.chain_id).await.unwrap();
    assert_eq!(files.find_executable("sh", "/bin"), Some("/bin/sh".into()));
    // A broken archive fails and leaves nothing behind.
    std::fs::write(t.path().join("junk.tar"), b"not a tar at all").unwrap();
    let e = ns
        .client
        .image_import(&t.path().join("junk.tar"), &ImportOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("junk.tar"), "{e}");
    ns.finish().await;
}

/// The log file once it holds every needle (panics naming the missing ones after
/// 30 s). The shim copies the last output into the file on its own schedule; the
/// exit can be reported a moment before (seen with the shim on a busy core).
async fn log_with(path: &std::path::Path, needles: &[&str]) -> String {
    roost_tests::wait_until_async(
        &format!("{} holding {needles:?}", path.display()),
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if needles.iter().all(|n| text.contains(n)) {
                Ok(text)
            } else {
                Err(format!("{text:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn runs_to_exit_code_3_with_logs_and_user_lookup() {
    let Some(sock) = socket() else { return };
    let ns = Ns::new(&sock, "exit3").await;
    import_busybox(&ns.client, IMG).await;
    let cg = CgroupV1::default();
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("exit3.log");
    let spec = run_spec("exit3-1", IMG, &["/bin/exit3"], &log);
    ns.client.run(&spec, &cg).await.unwrap();
    let exit = ns.client.wait("exit3-1", &cg).await.unwrap();
    assert_eq!(exit.status, 3);
    assert!(!exit.oom_killed);
    let text = log_with(&log, &["to-stdout", "to-stderr"]).await;
    assert!(
        text.contains("to-stdout") && text.contains("to-stderr"),
        "log: {text:?}"
    );
    assert_eq!(ns.client.state("exit3-1").await.unwrap(), State::Stopped(3));
    ns.client.delete("exit3-1", &cg).await.unwrap();
    assert_eq!(ns.client.state("exit3-1").await.unwrap(), State::NotFound);

    // User by name from the image's /etc/passwd.
    let log2 = t.path().join("id.log");
    let mut spec = run_spec("id-1", IMG, &["id"], &log2);
    spec.user = Some("app".into());
    ns.client.run(&spec, &cg).await.unwrap();
    assert_eq!(ns.client.wait("id-1", &cg).await.unwrap().status, 0);
    let text = log_with(&log2, &["uid="]).await;
    assert!(text.contains("uid=1000"), "id said {text:?}");
    ns.client.delete("id-1", &cg).await.unwrap();
    ns.finish().await;
}

#[tokio::test]
async fn stop_ends_a_sleeper_within_its_grace() {
    let Some(sock) = socket() else { return };
    let ns = Ns::new(&sock, "stop").await;
    import_busybox(&ns.client, IMG).await;
    let cg = CgroupV1::default();
    let t = tempfile::tempdir().unwrap();
    // sh as pid 1 ignores SIGTERM unless it traps it: this one exits on TERM. Its
    // first line says the trap is set (a stop before that would find no trap).
    let spec = run_spec(
        "sleeper-1",
        IMG,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo trapping; sleep 300 & wait",
        ],
        &t.path().join("s.log"),
    );
    ns.client.run(&spec, &cg).await.unwrap();
    log_with(&t.path().join("s.log"), &["trapping"]).await;
    let t0 = Instant::now();
    let exit = ns
        .client
        .stop("sleeper-1", Duration::from_secs(10), &cg)
        .await
        .unwrap()
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(exit.status, 0);
    // One that ignores SIGTERM is killed after the grace.
    let spec = run_spec(
        "stubborn-1",
        IMG,
        &["sleep", "300"],
        &t.path().join("k.log"),
    );
    ns.client.run(&spec, &cg).await.unwrap();
    let t0 = Instant::now();
    let exit = ns
        .client
        .stop("stubborn-1", Duration::from_secs(1), &cg)
        .await
        .unwrap()
        .unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(6),
        "took {took:?}"
    );
    assert_eq!(exit.status, 128 + 9);
    ns.client.delete("sleeper-1", &cg).await.unwrap();
    ns.client.delete("stubborn-1", &cg).await.unwrap();
    ns.finish().await;
}

#[tokio::test]
async fn bad_inputs_are_caught_before_anything_is_created() {
    let Some(sock) = socket() else { return };
    let ns = Ns::new(&sock, "bad").await;
    import_busybox(&ns.client, IMG).await;
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("x.log");
    let e = ns
        .client
        .check(&run_spec("b-1", "roost.test/absent:1", &["sh"], &log))
        .await
        .unwrap_err();
    assert!(matches!(e, CheckError::Image(_)), "{e:?}");
    assert!(e.to_string().contains("roost image import"), "{e}");
    let e = ns
        .client
        .check(&run_spec("b-1", IMG, &["no-such-cmd"], &log))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CheckError::Command(_)) && e.to_string().contains("no-such-cmd"),
        "{e}"
    );
    let mut s = run_spec("b-1", IMG, &["sh"], &log);
    s.user = Some("nobody".into());
    let e = ns.client.check(&s).await.unwrap_err();
    assert!(
        matches!(e, CheckError::User(_)) && e.to_string().contains("nobody"),
        "{e}"
    );
    let mut s = run_spec("b-1", IMG, &["sh"], &log);
    s.mounts = vec![
        BindMount {
            source: t.path().display().to_string(),
            destination: "/data".into(),
            read_only: true,
        },
        BindMount {
            source: "/nonexistent/roost".into(),
            destination: "/x".into(),
            read_only: false,
        },
    ];
    let e = ns.client.check(&s).await.unwrap_err();
    assert!(matches!(e, CheckError::Mount { index: 1, .. }), "{e:?}");
    // run() with a bad input leaves no container behind either.
    assert!(ns.client.run(&s, &CgroupV1::default()).await.is_err());
    let left: Vec<_> = ns
        .leftovers()
        .await
        .into_iter()
        .filter(|(k, _)| k == "container" || k == "task")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    ns.finish().await;
}

#[tokio::test]
async fn twenty_containers_start_at_once() {
    let Some(sock) = socket() else { return };
    let ns = Ns::new(&sock, "twenty").await;
    import_busybox(&ns.client, IMG).await;
    let cg = CgroupV1::default();
    let t = tempfile::tempdir().unwrap();
    let mut joins = Vec::new();
    for i in 0..20 {
        let c = ns.client.clone();
        let cg = cg.clone();
        let spec = run_spec(
            &format!("many-{i}"),
            IMG,
            &["sh", "-c", &format!("echo hello {i}; exit {}", i % 4)],
            &t.path().join(format!("{i}.log")),
        );
        joins.push(tokio::spawn(async move {
            c.run(&spec, &cg).await.unwrap();
            let exit = c.wait(&spec.id, &cg).await.unwrap();
            c.delete(&spec.id, &cg).await.unwrap();
            exit.status
        }));
    }
    for (i, j) in joins.into_iter().enumerate() {
        assert_eq!(j.await.unwrap(), (i % 4) as u32);
        let log = std::fs::read_to_string(t.path().join(format!("{i}.log"))).unwrap();
        assert_eq!(log.trim(), format!("hello {i}"));
    }
    ns.finish().await;
}

/// A container record left with an instance's id (a delete cut short, or a daemon
/// whose state was reset) does not block the start when it is stopped; a running one
/// is refused with the fix and left alone.
#[tokio::test]
async fn a_stale_container_with_the_same_id_is_replaced_but_a_running_one_is_not() {
    let Some(sock) = socket() else { return };
    let ns = Ns::new(&sock, "stale").await;
    import_busybox(&ns.client, IMG).await;
    let cg = CgroupV1::default();
    let t = tempfile::tempdir().unwrap();
    let spec = run_spec("again-1", IMG, &["/bin/exit3"], &t.path().join("a.log"));
    ns.client.run(&spec, &cg).await.unwrap();
    let exit = ns.client.wait("again-1", &cg).await.unwrap();
    assert_eq!(exit.status, 3);
    // Not deleted: the same id starts again (the stopped record is replaced).
    ns.client.run(&spec, &cg).await.unwrap();
    let exit = ns.client.wait("again-1", &cg).await.unwrap();
    assert_eq!(exit.status, 3);
    ns.client.delete("again-1", &cg).await.unwrap();

    let sleeper = run_spec("busy-1", IMG, &["sleep", "300"], &t.path().join("b.log"));
    let pid = ns.client.run(&sleeper, &cg).await.unwrap();
    let e = ns.client.run(&sleeper, &cg).await.unwrap_err();
    assert!(matches!(e, TaskError::AlreadyRunning { .. }), "{e}");
    assert!(
        e.to_string().contains("busy-1") && e.to_string().contains("c rm"),
        "{e}"
    );
    assert_eq!(ns.client.state("busy-1").await.unwrap(), State::Running);
    assert_eq!(ns.client.pids("busy-1").await.unwrap().first(), Some(&pid));
    ns.client.delete("busy-1", &cg).await.unwrap();
    ns.finish().await;
}
