//! Boot a real Linux kernel (`ROOST_TEST_KERNEL`: a vmlinux with a PVH note or a
//! bzImage; optional `ROOST_TEST_INITRD`). Skipped unless set: a kernel sits in its
//! decompressor for minutes on nested KVM, so run it on a host with hardware KVM.
#![allow(clippy::unwrap_used)]

use roost_tests::vmm::{kvm_available, run_vmm};
use std::time::Duration;

#[test]
fn linux_boots_to_its_banner_and_reboots_through_the_i8042() {
    let Ok(kernel) = std::env::var("ROOST_TEST_KERNEL") else {
        eprintln!(
            "SKIPPED: set ROOST_TEST_KERNEL to a vmlinux (PVH note) or bzImage on a host with hardware KVM"
        );
        return;
    };
    if !kvm_available() {
        return;
    }
    // No init: the kernel panics and `panic=-1 reboot=k` resets through the i8042.
    let cmdline = "console=ttyS0 reboot=k panic=-1 noapic nomodule i8042.noaux";
    let mut args = vec![
        "--kernel",
        kernel.as_str(),
        "--cmdline",
        cmdline,
        "--vcpus",
        "2",
    ];
    let initrd = std::env::var("ROOST_TEST_INITRD").ok();
    if let Some(i) = &initrd {
        args.extend(["--initrd", i.as_str()]);
    }
    let out = run_vmm(&args, Duration::from_secs(600));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Linux version"), "no banner: {text}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
