//! CPUID: KVM's supported set, filtered to what a small guest should see.

use kvm_bindings::CpuId;

/// Shape KVM's supported CPUID for vCPU `index` of `count`.
pub fn filter(cpuid: &mut CpuId, index: u32, count: u32) {
    // Bits needed to number `count` logical CPUs in the x2APIC id.
    let shift = 32 - count.saturating_sub(1).leading_zeros();
    for e in cpuid.as_mut_slice() {
        match e.function {
            0x1 => {
                // APIC id, logical CPU count, CLFLUSH line size (8 × 8 bytes).
                e.ebx = (index << 24) | ((count & 0xff) << 16) | (8 << 8) | (e.ebx & 0xff);
                // Tell the guest it is virtualized; hide VMX/SVM-in-guest (no nesting).
                e.ecx |= 1 << 31;
                e.ecx &= !(1 << 5);
                if count > 1 {
                    e.edx |= 1 << 28;
                } else {
                    e.edx &= !(1 << 28);
                }
            }
            0x4 => {
                // Cores per package, minus one, in EAX[31:26].
                e.eax = (e.eax & 0x03ff_ffff) | ((count.saturating_sub(1) & 0x3f) << 26);
            }
            0x6 => {
                // No power management to offer.
                e.eax = 0;
                e.ecx &= !1;
            }
            0xa => {
                // No virtual PMU.
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xb => {
                e.edx = index;
                match e.index {
                    // SMT level: one thread per core.
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 0x100;
                    }
                    // Core level: `count` cores.
                    1 => {
                        e.eax = shift;
                        e.ebx = count;
                        e.ecx = 0x200 | 1;
                    }
                    n => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = n & 0xff;
                    }
                }
            }
            0x8000_0001 => {
                // SVM in the guest: no nesting.
                e.ecx &= !(1 << 2);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn leaf_one_carries_apic_id_and_count() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xffff_ff00,
                ecx: 1 << 5,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                ..Default::default()
            },
        ];
        let mut c = CpuId::from_entries(&entries).unwrap();
        filter(&mut c, 3, 4);
        let s = c.as_slice();
        assert_eq!(s[0].ebx >> 24, 3);
        assert_eq!((s[0].ebx >> 16) & 0xff, 4);
        assert_eq!(s[0].ecx & (1 << 5), 0);
        assert_ne!(s[0].ecx & (1 << 31), 0);
        assert_eq!(s[1].ebx, 4);
        assert_eq!(s[1].eax, 2);
        assert_eq!(s[1].edx, 3);
    }
}
