//! x86_64 guest setup: memory layout, CPUID, MSRs, registers, page tables, MP table.

pub mod cpuid;
pub mod mptable;
pub mod regs;

/// Guest-physical layout of the boot structures (all below 1 MiB, under the EBDA).
pub mod layout {
    /// GDT used for both entry points.
    pub const GDT: u64 = 0x500;
    /// An empty IDT (limit 0): any exception before the guest loads its own triple-faults.
    pub const IDT: u64 = 0x520;
    /// `hvm_start_info` for PVH boot.
    pub const PVH_INFO: u64 = 0x6000;
    /// PVH module list (the initrd).
    pub const PVH_MODLIST: u64 = 0x6040;
    /// PVH memory map.
    pub const PVH_MEMMAP: u64 = 0x6080;
    /// Linux `boot_params` (the zero page).
    pub const ZERO_PAGE: u64 = 0x7000;
    /// Initial stack pointer for the 64-bit Linux entry.
    pub const BOOT_STACK: u64 = 0x8ff0;
    /// Page-map level 4.
    pub const PML4: u64 = 0x9000;
    /// Page-directory-pointer table.
    pub const PDPT: u64 = 0xa000;
    /// Four page directories (2 MiB pages) identity-mapping the first 4 GiB.
    pub const PD: u64 = 0xb000;
    /// Kernel command line.
    pub const CMDLINE: u64 = 0x20000;
    /// Low RAM in e820 stops here; the MP configuration table lives above it.
    pub const LOW_RAM_END: u64 = 0x9f000;
    /// The MP configuration table (room for 64 processors).
    pub const MPTABLE: u64 = 0x9f000;
    /// The MP floating pointer, in the last KiB of base memory where guests scan for it.
    pub const MP_FLOATING: u64 = 0x9fc00;
    /// Kernels are loaded from here up.
    pub const HIMEM: u64 = 0x10_0000;
    /// 32-bit MMIO hole: guest RAM is never placed in [MMIO_GAP_START, 4 GiB).
    pub const MMIO_GAP_START: u64 = 0xc000_0000;
    /// End of the 32-bit MMIO hole.
    pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
    /// The I/O APIC's MMIO base.
    pub const IOAPIC: u64 = 0xfec0_0000;
    /// The local APIC's MMIO base.
    pub const LAPIC: u64 = 0xfee0_0000;
}
