//! Initial vCPU state: MSRs, FPU, LAPIC, GDT, identity page tables, and the registers of
//! the two entry points (64-bit Linux boot protocol and 32-bit PVH).

use super::layout::{BOOT_STACK, GDT, IDT, PD, PDPT, PML4};
use kvm_bindings::{
    kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs,
};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Errors while setting up a vCPU's registers or the boot page tables.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    /// A KVM vCPU ioctl failed.
    #[error("KVM refused to {what}")]
    Kvm {
        /// Which step.
        what: &'static str,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Writing boot structures into guest memory failed.
    #[error("cannot write {what} at guest address {addr:#x}; give the guest more memory")]
    Memory {
        /// Which structure.
        what: &'static str,
        /// Where.
        addr: u64,
    },
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> RegsError {
    move |source| RegsError::Kvm { what, source }
}

/// Where execution starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// 64-bit long mode, paging on, `%rsi` = boot_params.
    Linux64 {
        /// Entry address.
        rip: u64,
        /// Address of `boot_params`.
        boot_params: u64,
    },
    /// 32-bit protected mode, paging off, `%ebx` = hvm_start_info.
    Pvh {
        /// Entry address.
        rip: u64,
        /// Address of `hvm_start_info`.
        start_info: u64,
    },
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;

/// Boot MSRs: syscall MSRs cleared, fast strings on, MTRRs enabled with write-back default.
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let list = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, 1),
        (MSR_MTRR_DEF_TYPE, (1 << 11) | 6),
    ];
    let entries: Vec<kvm_msr_entry> = list
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_| RegsError::Kvm {
        what: "build the MSR list",
        source: kvm_ioctls::Error::new(libc::E2BIG),
    })?;
    let set = vcpu.set_msrs(&msrs).map_err(kvm("set boot MSRs"))?;
    if set != entries.len() {
        // KVM stops at the first MSR it does not know; a nested host may lack some.
        tracing::warn!(
            set,
            wanted = entries.len(),
            "KVM accepted only some boot MSRs"
        );
    }
    Ok(())
}

/// x87 control word and MXCSR at their reset defaults.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("set the FPU state"))
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(l: &kvm_lapic_state, off: usize) -> u32 {
    let b = &l.regs[off..off + 4];
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

fn set_lapic_reg(l: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, byte) in v.to_le_bytes().iter().enumerate() {
        l.regs[off + i] = *byte as _;
    }
}

/// LINT0 = ExtINT (the legacy PIC), LINT1 = NMI, as firmware leaves them.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let mut l = vcpu.get_lapic().map_err(kvm("read the local APIC"))?;
    let lvt0 = lapic_reg(&l, APIC_LVT0);
    set_lapic_reg(&mut l, APIC_LVT0, (lvt0 & !0x700) | (APIC_MODE_EXTINT << 8));
    let lvt1 = lapic_reg(&l, APIC_LVT1);
    set_lapic_reg(&mut l, APIC_LVT1, (lvt1 & !0x700) | (APIC_MODE_NMI << 8));
    vcpu.set_lapic(&l).map_err(kvm("set the local APIC"))
}

/// GDT entries: null, 64-bit code (0x08), 32-bit code (0x10), data (0x18), TSS (0x20).
const GDT_ENTRIES: [u64; 5] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x0080_8b00_0000_0000,
];

fn segment(selector: u16, entry: u64) -> kvm_segment {
    let flags = (entry >> 40) & 0xf0ff;
    let limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let base = ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000);
    let g = (flags >> 15) & 1;
    kvm_segment {
        base,
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector,
        type_: (flags & 0xf) as u8,
        present: ((flags >> 7) & 1) as u8,
        dpl: ((flags >> 5) & 3) as u8,
        db: ((flags >> 14) & 1) as u8,
        s: ((flags >> 4) & 1) as u8,
        l: ((flags >> 13) & 1) as u8,
        g: g as u8,
        avl: ((flags >> 12) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Write the GDT, an empty IDT and the identity page tables (first 4 GiB, 2 MiB pages).
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<(), RegsError> {
    let w = |what, addr: u64, v: u64| {
        mem.write_obj(v, GuestAddress(addr))
            .map_err(|_| RegsError::Memory { what, addr })
    };
    for (i, e) in (0u64..).zip(GDT_ENTRIES.iter()) {
        w("the GDT", GDT + i * 8, *e)?;
    }
    w("the IDT", IDT, 0)?;
    w("the PML4", PML4, PDPT | 0x3)?;
    for i in 0..4u64 {
        w("the PDPT", PDPT + i * 8, (PD + i * 0x1000) | 0x3)?;
    }
    // 2048 entries × 2 MiB = 4 GiB, the MMIO hole included (so guests reach the APICs).
    let mut table = vec![0u8; 4 * 4096];
    for (i, chunk) in (0u64..).zip(table.chunks_exact_mut(8)) {
        chunk.copy_from_slice(&((i << 21) | 0x83).to_le_bytes());
    }
    mem.write_slice(&table, GuestAddress(PD))
        .map_err(|_| RegsError::Memory {
            what: "the page directories",
            addr: PD,
        })
}

/// Set general and segment registers for `entry` on the boot vCPU.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: Entry) -> Result<(), RegsError> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(kvm("read segment registers"))?;
    sregs.gdt.base = GDT;
    sregs.gdt.limit = u16::try_from(GDT_ENTRIES.len() * 8 - 1).unwrap_or(u16::MAX);
    sregs.idt.base = IDT;
    sregs.idt.limit = 0;
    let data = segment(0x18, GDT_ENTRIES[3]);
    let tss = segment(0x20, GDT_ENTRIES[4]);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    let regs = match entry {
        Entry::Linux64 { rip, boot_params } => {
            sregs.cs = segment(0x08, GDT_ENTRIES[1]);
            sregs.cr3 = PML4;
            sregs.cr4 |= 0x20; // PAE
            sregs.cr0 |= 0x8000_0001; // PG | PE
            sregs.efer |= 0x500; // LME | LMA
            kvm_regs {
                rip,
                rsp: BOOT_STACK,
                rbp: BOOT_STACK,
                rsi: boot_params,
                rflags: 0x2,
                ..Default::default()
            }
        }
        Entry::Pvh { rip, start_info } => {
            sregs.cs = segment(0x10, GDT_ENTRIES[2]);
            sregs.cr0 = (sregs.cr0 | 0x1) & !0x8000_0000; // PE, no paging
            sregs.cr4 = 0;
            sregs.efer = 0;
            kvm_regs {
                rip,
                rbx: start_info,
                rflags: 0x2,
                ..Default::default()
            }
        }
    };
    vcpu.set_sregs(&sregs)
        .map_err(kvm("set segment registers"))?;
    vcpu.set_regs(&regs).map_err(kvm("set general registers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_flat_segments() {
        let cs = segment(0x08, GDT_ENTRIES[1]);
        assert_eq!((cs.l, cs.db, cs.present, cs.type_), (1, 0, 1, 0xb));
        assert_eq!(cs.limit, 0xffff_ffff);
        let cs32 = segment(0x10, GDT_ENTRIES[2]);
        assert_eq!((cs32.l, cs32.db), (0, 1));
        let tss = segment(0x20, GDT_ENTRIES[4]);
        assert_eq!(tss.type_, 0xb);
    }

    #[test]
    fn page_tables_identity_map_four_gib() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4)).unwrap();
        assert_eq!(pml4, PDPT | 3);
        let last: u64 = mem.read_obj(GuestAddress(PD + 2047 * 8)).unwrap();
        assert_eq!(last, (2047u64 << 21) | 0x83);
    }
}
