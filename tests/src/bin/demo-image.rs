//! Writes the demo busybox image (an OCI layout tarball built from Debian's
//! busybox-static) to the path given: `demo-image OUT.tar [NAME]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next() else {
        eprintln!("usage: demo-image OUT.tar [NAME]");
        std::process::exit(2);
    };
    let name = args
        .next()
        .unwrap_or_else(|| "docker.io/library/busybox:demo".into());
    let dir = tempfile::tempdir().unwrap();
    let digest = roost_tests::container::busybox_layout(dir.path(), &name);
    roost_tests::container::tar_dir(dir.path(), std::path::Path::new(&out));
    println!("{name} {digest}");
}
