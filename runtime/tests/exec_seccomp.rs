//! The OCI seccomp compiler, checked by running its BPF programs in a small interpreter over
//! synthetic syscalls (every comparison operator on 64-bit values that differ in either half),
//! and by the kernel accepting the program (the isolation tests load profiles into containers).

use hoist_runtime::exec::compile_seccomp;
use oci_spec::runtime::{
    Arch, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscallBuilder,
};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
fn errno(e: u32) -> u32 {
    0x0005_0000 | e
}

/// Classic BPF as seccomp runs it: returns the action.
fn interpret(prog: &[seccompiler::sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = Vec::new();
    data.extend_from_slice(&nr.to_le_bytes());
    data.extend_from_slice(&arch.to_le_bytes());
    data.extend_from_slice(&0u64.to_le_bytes());
    for a in args {
        data.extend_from_slice(&a.to_le_bytes());
    }
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let i = &prog[pc];
        let k = i.k;
        match i.code {
            0x20 => {
                let o = k as usize;
                a = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
            }
            0x54 => a &= k,
            0x05 => pc += k as usize,
            0x15 => pc += if a == k { i.jt } else { i.jf } as usize,
            0x25 => pc += if a > k { i.jt } else { i.jf } as usize,
            0x35 => pc += if a >= k { i.jt } else { i.jf } as usize,
            0x06 => return k,
            c => panic!("unexpected BPF opcode {c:#x} at {pc}"),
        }
        pc += 1;
    }
}

fn profile(
    default: LinuxSeccompAction,
    rules: Vec<oci_spec::runtime::LinuxSyscall>,
) -> oci_spec::runtime::LinuxSeccomp {
    LinuxSeccompBuilder::default()
        .default_action(default)
        .architectures(vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86])
        .syscalls(rules)
        .build()
        .unwrap()
}

#[test]
fn every_operator_on_both_halves() {
    use LinuxSeccompOperator::*;
    let v: u64 = 0x1_0000_0005;
    let probes: [u64; 7] = [
        0,
        0x1_0000_0004,
        0x1_0000_0005,
        0x1_0000_0006,
        0x0_ffff_ffff,
        0x0_0000_0005,
        0x2_0000_0000,
    ];
    type Op = (LinuxSeccompOperator, fn(u64, u64) -> bool);
    let ops: [Op; 6] = [
        (ScmpCmpEq, |a, b| a == b),
        (ScmpCmpNe, |a, b| a != b),
        (ScmpCmpLt, |a, b| a < b),
        (ScmpCmpLe, |a, b| a <= b),
        (ScmpCmpGt, |a, b| a > b),
        (ScmpCmpGe, |a, b| a >= b),
    ];
    for (op, f) in ops {
        for index in [0usize, 3, 5] {
            let p = profile(
                LinuxSeccompAction::ScmpActAllow,
                vec![
                    LinuxSyscallBuilder::default()
                        .names(vec!["ioctl".to_string()])
                        .action(LinuxSeccompAction::ScmpActErrno)
                        .errno_ret(22u32)
                        .args(vec![
                            LinuxSeccompArgBuilder::default()
                                .index(index)
                                .value(v)
                                .op(op)
                                .build()
                                .unwrap(),
                        ])
                        .build()
                        .unwrap(),
                ],
            );
            let prog = compile_seccomp(&p).unwrap();
            for probe in probes {
                let mut args = [0u64; 6];
                args[index] = probe;
                let got = interpret(&prog, 16 /* ioctl */, AUDIT_ARCH_X86_64, args);
                let want = if f(probe, v) { errno(22) } else { ALLOW };
                assert_eq!(got, want, "{op:?} arg{index}={probe:#x} vs {v:#x}");
                // Another syscall is never matched.
                assert_eq!(interpret(&prog, 0, AUDIT_ARCH_X86_64, args), ALLOW);
            }
        }
    }
}

#[test]
fn masked_eq_multiple_args_first_match_and_default() {
    use LinuxSeccompOperator::*;
    let arg = |index: usize, value: u64, two: Option<u64>, op| {
        let mut b = LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(op);
        if let Some(t) = two {
            b = b.value_two(t);
        }
        b.build().unwrap()
    };
    let p = profile(
        LinuxSeccompAction::ScmpActErrno,
        vec![
            // clone without namespace flags (docker's rule): allowed
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string(), "no_such_syscall".to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(vec![arg(0, 0x7E02_0000, Some(0), ScmpCmpMaskedEq)])
                .build()
                .unwrap(),
            // both conditions must hold
            LinuxSyscallBuilder::default()
                .names(vec!["socket".to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(vec![arg(0, 2, None, ScmpCmpEq), arg(1, 1, None, ScmpCmpEq)])
                .build()
                .unwrap(),
            // first match wins: read is KILL even though a later rule allows it
            LinuxSyscallBuilder::default()
                .names(vec!["read".to_string()])
                .action(LinuxSeccompAction::ScmpActKillProcess)
                .build()
                .unwrap(),
            LinuxSyscallBuilder::default()
                .names(vec!["read".to_string(), "write".to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .build()
                .unwrap(),
        ],
    );
    let prog = compile_seccomp(&p).unwrap();
    let run = |nr, args| interpret(&prog, nr, AUDIT_ARCH_X86_64, args);
    let eperm = errno(1); // SCMP_ACT_ERRNO without errnoRet is EPERM
    assert_eq!(run(56, [0x11, 0, 0, 0, 0, 0]), ALLOW, "clone(SIGCHLD)");
    assert_eq!(
        run(56, [0x1000_0011, 0, 0, 0, 0, 0]),
        eperm,
        "clone(CLONE_NEWUSER)"
    );
    assert_eq!(
        run(56, [0x1_0000_0011, 0, 0, 0, 0, 0]),
        ALLOW,
        "high half is outside the mask"
    );
    assert_eq!(
        run(41, [2, 1, 0, 0, 0, 0]),
        ALLOW,
        "socket(AF_INET, SOCK_STREAM)"
    );
    assert_eq!(run(41, [2, 2, 0, 0, 0, 0]), eperm);
    assert_eq!(run(41, [10, 1, 0, 0, 0, 0]), eperm);
    assert_eq!(run(0, [0; 6]), KILL_PROCESS, "read: first rule");
    assert_eq!(run(1, [0; 6]), ALLOW, "write");
    assert_eq!(run(2, [0; 6]), eperm, "open: default");
    // Other architectures and the x32 ABI are killed.
    assert_eq!(interpret(&prog, 1, 0x4000_0003, [0; 6]), KILL_PROCESS);
    assert_eq!(run(0x4000_0001, [0; 6]), KILL_PROCESS);
}

#[test]
fn rejects_what_it_cannot_enforce() {
    let notify = profile(
        LinuxSeccompAction::ScmpActAllow,
        vec![
            LinuxSyscallBuilder::default()
                .names(vec!["read".to_string()])
                .action(LinuxSeccompAction::ScmpActNotify)
                .build()
                .unwrap(),
        ],
    );
    let e = compile_seccomp(&notify).unwrap_err().to_string();
    assert!(e.contains("SCMP_ACT_NOTIFY"), "{e}");
    let arm_only = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![Arch::ScmpArchAarch64])
        .build()
        .unwrap();
    let e = compile_seccomp(&arm_only).unwrap_err().to_string();
    assert!(e.contains("SCMP_ARCH_X86_64"), "{e}");
}

mod exec_support;

/// Docker's default profile (as `hoist run` puts it in config.json) compiles, fits the kernel's
/// limit, and a busybox container runs under it while what it forbids is refused.
#[test]
fn docker_default_profile_in_a_container() {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let json = hoist_runtime::spec::default_profile(&caps, std::env::consts::ARCH);
    let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(json).unwrap();
    let prog = compile_seccomp(&profile).unwrap();
    // unshare without CAP_SYS_ADMIN falls to the default action's errno.
    let refused = match profile.default_errno_ret() {
        Some(38) => "Function not implemented",
        _ => "Operation not permitted",
    };
    assert!(
        prog.len() > 300 && prog.len() <= 4096,
        "{} instructions",
        prog.len()
    );
    let exec = exec_support::hoist();
    let out = exec_support::sh(
        &exec,
        "grep Seccomp: /proc/self/status; ls / > /dev/null && echo ls ok; \
         unshare -U true 2>&1 || echo unshare refused; exit 0",
        |b| {
            b.linux_mut().set_seccomp(Some(profile));
        },
    );
    assert!(out.starts_with("Seccomp:\t2\nls ok\n"), "{out}");
    assert!(out.contains(refused), "{out}");
    assert!(out.ends_with("unshare refused\n"), "{out}");
}
