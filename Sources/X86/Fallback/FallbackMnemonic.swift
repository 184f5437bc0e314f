/// Names of instructions the fallback emulates or can at least name in a failure message.
public enum Mnemonic: String, Equatable, Sendable {
    // Emulated (or turned into the exception they raise).
    case int3, clac, stac, popcnt, lzcnt, tzcnt, bsf, bsr, fwait, ud0, ud1, ud2, nop, pause, endbr64, endbr32
    // Named only, so a failure says what the guest tried.
    case int, int1, into, iret, hlt, cli, sti, pushf, popf, cpuid, rdtsc, rdtscp, rdpmc, rdmsr, wrmsr
    case `in`, out, ins, outs, syscall, sysret, sysenter, sysexit, swapgs, clts, invd, wbinvd, wbnoinvd, rsm
    case lgdt, sgdt, lidt, sidt, lldt, sldt, ltr, str, lmsw, smsw, verr, verw, invlpg, invlpga, invpcid
    case movCR = "mov cr", movDR = "mov dr"
    case monitor, mwait, monitorx, mwaitx, xgetbv, xsetbv, rdpkru, wrpkru, clzero, rdpru, serialize
    case vmcall, vmmcall, vmlaunch, vmresume, vmxoff, vmrun, vmload, vmsave, stgi, clgi, skinit
    case vmread, vmwrite, vmptrld, vmptrst, vmclear, vmxon, getsec, encls, eretu, erets
    case fxsave, fxrstor, ldmxcsr, stmxcsr, xsave, xrstor, xsaveopt, xsavec, xsaves, xrstors
    case lfence, mfence, sfence, clflush, clflushopt, clwb, prefetch, prefetchw
    case rdfsbase, rdgsbase, wrfsbase, wrgsbase, rdrand, rdseed, rdpid, cmpxchg8b, cmpxchg16b
    case movbe, crc32, emms, femms

    /// The conventional lower-case name.
    public var name: String { rawValue }

    /// Names a decoded instruction, or nil when it is not in the table.
    public init?(_ instruction: InstructionDecoder.Instruction) {
        let p = instruction.prefixes
        let modrm = instruction.modrm
        let isRegister = modrm?.isRegister ?? false
        let digit = modrm?.digit ?? 0
        switch instruction.map {
        case .primary:
            switch instruction.opcode {
            case 0xcc: self = .int3
            case 0xcd: self = .int
            case 0xce: self = .into
            case 0xcf: self = .iret
            case 0xf1: self = .int1
            case 0xf4: self = .hlt
            case 0xfa: self = .cli
            case 0xfb: self = .sti
            case 0x9c: self = .pushf
            case 0x9d: self = .popf
            case 0x9b: self = .fwait
            case 0xe4, 0xe5, 0xec, 0xed: self = .in
            case 0xe6, 0xe7, 0xee, 0xef: self = .out
            case 0x6c, 0x6d: self = .ins
            case 0x6e, 0x6f: self = .outs
            case 0x90:
                // With REX.B this is xchg r8, rax, not a NOP.
                if instruction.rexB { return nil }
                self = p.lastRepeat == 0xf3 ? .pause : .nop
            default: return nil
            }
        case .map0F:
            switch instruction.opcode {
            case 0x00:
                switch digit {
                case 0: self = .sldt
                case 1: self = .str
                case 2: self = .lldt
                case 3: self = .ltr
                case 4: self = .verr
                case 5: self = .verw
                default: return nil
                }
            case 0x01:
                guard let modrm else { return nil }
                if !isRegister {
                    switch digit {
                    case 0: self = .sgdt
                    case 1: self = .sidt
                    case 2: self = .lgdt
                    case 3: self = .lidt
                    case 4: self = .smsw
                    case 6: self = .lmsw
                    case 7: self = .invlpg
                    default: return nil
                    }
                    return
                }
                switch modrm.raw {
                case 0xc1: self = .vmcall
                case 0xc2: self = .vmlaunch
                case 0xc3: self = .vmresume
                case 0xc4: self = .vmxoff
                case 0xc8: self = .monitor
                case 0xc9: self = .mwait
                case 0xca:
                    // F3/F2 0F 01 CA are FRED's eretu/erets.
                    switch p.lastRepeat {
                    case 0xf3: self = .eretu
                    case 0xf2: self = .erets
                    default: self = .clac
                    }
                case 0xcb: self = .stac
                case 0xcf: self = .encls
                case 0xd0: self = .xgetbv
                case 0xd1: self = .xsetbv
                case 0xd8: self = .vmrun
                case 0xd9: self = .vmmcall
                case 0xda: self = .vmload
                case 0xdb: self = .vmsave
                case 0xdc: self = .stgi
                case 0xdd: self = .clgi
                case 0xde: self = .skinit
                case 0xdf: self = .invlpga
                case 0xe8: self = .serialize
                case 0xee: self = .rdpkru
                case 0xef: self = .wrpkru
                case 0xf8: self = .swapgs
                case 0xf9: self = .rdtscp
                case 0xfa: self = .monitorx
                case 0xfb: self = .mwaitx
                case 0xfc: self = .clzero
                case 0xfd: self = .rdpru
                default:
                    switch digit {
                    case 4: self = .smsw
                    case 6: self = .lmsw
                    default: return nil
                    }
                }
            case 0x05: self = .syscall
            case 0x06: self = .clts
            case 0x07: self = .sysret
            case 0x08: self = .invd
            case 0x09: self = p.lastRepeat == 0xf3 ? .wbnoinvd : .wbinvd
            case 0x0b: self = .ud2
            case 0x0d: self = .prefetchw
            case 0x0e: self = .femms
            case 0x18: self = .prefetch
            case 0x1e:
                guard p.lastRepeat == 0xf3, let modrm else { return nil }
                switch modrm.raw {
                case 0xfa: self = .endbr64
                case 0xfb: self = .endbr32
                default: return nil
                }
            case 0x1f:
                guard digit == 0 else { return nil }
                self = .nop
            case 0x20, 0x22: self = .movCR
            case 0x21, 0x23: self = .movDR
            case 0x30: self = .wrmsr
            case 0x31: self = .rdtsc
            case 0x32: self = .rdmsr
            case 0x33: self = .rdpmc
            case 0x34: self = .sysenter
            case 0x35: self = .sysexit
            case 0x37: self = .getsec
            case 0x77: self = .emms
            case 0x78: self = .vmread
            case 0x79: self = .vmwrite
            case 0xa2: self = .cpuid
            case 0xaa: self = .rsm
            case 0xae:
                if isRegister {
                    if p.lastRepeat == 0xf3 {
                        switch digit {
                        case 0: self = .rdfsbase
                        case 1: self = .rdgsbase
                        case 2: self = .wrfsbase
                        case 3: self = .wrgsbase
                        default: return nil
                        }
                        return
                    }
                    switch digit {
                    case 5: self = .lfence
                    case 6: self = .mfence
                    case 7: self = .sfence
                    default: return nil
                    }
                } else {
                    switch digit {
                    case 0: self = .fxsave
                    case 1: self = .fxrstor
                    case 2: self = .ldmxcsr
                    case 3: self = .stmxcsr
                    case 4: self = .xsave
                    case 5: self = .xrstor
                    case 6: self = p.operandSize ? .clwb : .xsaveopt
                    default: self = p.operandSize ? .clflushopt : .clflush
                    }
                }
            case 0xb8:
                guard p.lastRepeat == 0xf3 else { return nil }
                self = .popcnt
            case 0xb9: self = .ud1
            case 0xbc: self = p.lastRepeat == 0xf3 ? .tzcnt : .bsf
            case 0xbd: self = p.lastRepeat == 0xf3 ? .lzcnt : .bsr
            case 0xc7:
                if isRegister {
                    switch digit {
                    case 6: self = .rdrand
                    case 7: self = p.lastRepeat == 0xf3 ? .rdpid : .rdseed
                    default: return nil
                    }
                } else {
                    switch digit {
                    case 1: self = instruction.rexW ? .cmpxchg16b : .cmpxchg8b
                    case 3: self = .xrstors
                    case 4: self = .xsavec
                    case 5: self = .xsaves
                    case 6: self = p.operandSize ? .vmclear : (p.lastRepeat == 0xf3 ? .vmxon : .vmptrld)
                    case 7: self = .vmptrst
                    default: return nil
                    }
                }
            case 0xff: self = .ud0
            default: return nil
            }
        case .map0F38:
            switch instruction.opcode {
            case 0x82 where p.operandSize: self = .invpcid
            case 0xf0, 0xf1: self = p.lastRepeat == 0xf2 ? .crc32 : .movbe
            default: return nil
            }
        case .map0F3A:
            return nil
        }
    }
}
