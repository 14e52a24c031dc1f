//! OCI seccomp profiles (`linux.seccomp`) to classic BPF, installed with `seccompiler`.
//!
//! seccompiler's own filter builder has one match action per filter; OCI profiles give each rule
//! its own action (ALLOW, ERRNO with a value, KILL, ...) and the first matching rule wins, so the
//! program is generated here, in rule order, as seccompiler's `sock_filter` instructions:
//!
//! ```text
//!   load arch; if arch != x86_64 -> KILL_PROCESS
//!   load nr;   if nr >= X32_BIT  -> KILL_PROCESS        (x32 ABI calls)
//!   for each rule: if nr == N [&& every arg condition] -> rule's action
//!   default action
//! ```
//! 64-bit argument comparisons are done on the high and low 32-bit halves.

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use seccompiler::sock_filter;

use super::ExecError;
use super::syscalls;

const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_ALU: u16 = 0x04;
const BPF_AND: u16 = 0x50;
const BPF_JMP: u16 = 0x05;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_lo(i: usize) -> u32 {
    16 + 8 * i as u32
}
const fn off_arg_hi(i: usize) -> u32 {
    20 + 8 * i as u32
}
/// The kernel's limit on a filter's length.
const BPF_MAXINSNS: usize = 4096;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}
fn ld(off: u32) -> sock_filter {
    stmt(BPF_LD | BPF_W | BPF_ABS, off)
}
fn ret(k: u32) -> sock_filter {
    stmt(BPF_RET | BPF_K, k)
}

/// Looks up an x86_64 syscall number by name.
pub fn syscall_number(name: &str) -> Option<u32> {
    syscalls::X86_64
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| syscalls::X86_64[i].1)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, ExecError> {
    match a {
        LinuxSeccompAction::ScmpActNotify => Err(ExecError::Config(
            "seccomp action SCMP_ACT_NOTIFY is not supported".into(),
        )),
        a => Ok(a.as_u32(errno)),
    }
}

/// One argument condition; jumps to `fail` (relative index of a `JA` to the next rule emitted by
/// the caller) are patched after the block is laid out.
enum J {
    Next,
    Ok,
    Fail,
}

/// Emits the checks of one 64-bit condition: a list of (instruction, jt target, jf target).
fn cond(op: LinuxSeccompOperator, idx: usize, v: u64, v2: Option<u64>) -> Vec<(sock_filter, J, J)> {
    let (vh, vl) = ((v >> 32) as u32, v as u32);
    let j = |code, k| jump(BPF_JMP | code | BPF_K, k, 0, 0);
    let none = || (J::Next, J::Next);
    let mut out: Vec<(sock_filter, J, J)> = Vec::new();
    let mut push = |i: sock_filter, (t, f): (J, J)| out.push((i, t, f));
    match op {
        LinuxSeccompOperator::ScmpCmpEq => {
            push(ld(off_arg_hi(idx)), none());
            push(j(BPF_JEQ, vh), (J::Next, J::Fail));
            push(ld(off_arg_lo(idx)), none());
            push(j(BPF_JEQ, vl), (J::Ok, J::Fail));
        }
        LinuxSeccompOperator::ScmpCmpNe => {
            push(ld(off_arg_hi(idx)), none());
            push(j(BPF_JEQ, vh), (J::Next, J::Ok));
            push(ld(off_arg_lo(idx)), none());
            push(j(BPF_JEQ, vl), (J::Fail, J::Ok));
        }
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let want = v2.unwrap_or(0);
            let (wh, wl) = ((want >> 32) as u32, want as u32);
            push(ld(off_arg_hi(idx)), none());
            push(stmt(BPF_ALU | BPF_AND | BPF_K, vh), none());
            push(j(BPF_JEQ, wh), (J::Next, J::Fail));
            push(ld(off_arg_lo(idx)), none());
            push(stmt(BPF_ALU | BPF_AND | BPF_K, vl), none());
            push(j(BPF_JEQ, wl), (J::Ok, J::Fail));
        }
        LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe => {
            let last = if op == LinuxSeccompOperator::ScmpCmpGt {
                BPF_JGT
            } else {
                BPF_JGE
            };
            push(ld(off_arg_hi(idx)), none());
            push(j(BPF_JGT, vh), (J::Ok, J::Next));
            push(j(BPF_JEQ, vh), (J::Next, J::Fail));
            push(ld(off_arg_lo(idx)), none());
            push(j(last, vl), (J::Ok, J::Fail));
        }
        LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe => {
            // a < v  <=>  !(a >= v);  a <= v  <=>  !(a > v)
            let last = if op == LinuxSeccompOperator::ScmpCmpLt {
                BPF_JGE
            } else {
                BPF_JGT
            };
            push(ld(off_arg_hi(idx)), none());
            push(j(BPF_JGE, vh), (J::Next, J::Ok));
            push(j(BPF_JEQ, vh), (J::Next, J::Fail));
            push(ld(off_arg_lo(idx)), none());
            push(j(last, vl), (J::Fail, J::Ok));
        }
    }
    out
}

/// Compiles an OCI seccomp profile for x86_64. Syscall names unknown on x86_64 are skipped (as
/// runc does); other architectures' calls (i386, x32) are killed.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<sock_filter>, ExecError> {
    if let Some(archs) = profile.architectures()
        && !archs.is_empty()
        && !archs
            .iter()
            .any(|a| matches!(a, Arch::ScmpArchX86_64 | Arch::ScmpArchNative))
    {
        return Err(ExecError::Config(
            "linux.seccomp.architectures does not include SCMP_ARCH_X86_64".into(),
        ));
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut prog = vec![
        ld(OFF_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        ret(RET_KILL_PROCESS),
        ld(OFF_NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        ret(RET_KILL_PROCESS),
    ];
    // A holds nr at the start of a rule unless the previous rule loaded arguments.
    let mut a_is_nr = true;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        let args = rule.args().as_deref().unwrap_or(&[]);
        for arg in args {
            if arg.index() > 5 {
                return Err(ExecError::Config(format!(
                    "linux.seccomp: argument index {} (max 5)",
                    arg.index()
                )));
            }
        }
        for name in rule.names() {
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            if act == default && args.is_empty() {
                continue;
            }
            if !a_is_nr {
                prog.push(ld(OFF_NR));
                a_is_nr = true;
            }
            if args.is_empty() {
                prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1));
                prog.push(ret(act));
                continue;
            }
            // Layout: JEQ nr (jt 1, jf 0); JA next; [conditions...]; RET act; next:
            // Each condition: checks..., FAIL: JA next, OK:
            let mut block: Vec<sock_filter> = Vec::new();
            let mut fail_jumps: Vec<usize> = vec![];
            block.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, 1, 0));
            fail_jumps.push(block.len());
            block.push(stmt(BPF_JMP | BPF_JA, 0));
            for arg in args {
                let checks = cond(arg.op(), arg.index(), arg.value(), arg.value_two());
                let n = checks.len();
                // instruction i of checks is at position base+i; FAIL at base+n; OK at base+n+1
                for (i, (mut ins, t, f)) in checks.into_iter().enumerate() {
                    let rel = |target: &J| -> u8 {
                        match target {
                            J::Next => 0,
                            J::Fail => (n - i - 1) as u8,
                            J::Ok => (n - i) as u8,
                        }
                    };
                    if ins.code & 0x07 == BPF_JMP {
                        ins.jt = rel(&t);
                        ins.jf = rel(&f);
                    }
                    block.push(ins);
                }
                fail_jumps.push(block.len());
                block.push(stmt(BPF_JMP | BPF_JA, 0));
            }
            block.push(ret(act));
            let end = block.len();
            for at in fail_jumps {
                block[at].k = (end - at - 1) as u32;
            }
            prog.extend(block);
            a_is_nr = false;
        }
    }
    prog.push(ret(default));
    if prog.len() > BPF_MAXINSNS {
        return Err(ExecError::Config(format!(
            "linux.seccomp compiles to {} BPF instructions (max {BPF_MAXINSNS})",
            prog.len()
        )));
    }
    Ok(prog)
}

/// Installs `prog` on the calling thread, with the profile's flags.
pub(crate) fn install(prog: &[sock_filter], profile: &LinuxSeccomp) -> std::io::Result<()> {
    use oci_spec::runtime::LinuxSeccompFilterFlag as F;
    let mut flags: libc::c_ulong = 0;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            #[allow(unreachable_patterns)]
            _ => 0,
        };
    }
    // The raw syscall, always: seccompiler's `apply_filter` also sets no_new_privs, which only
    // `noNewPrivileges` (docker's `--security-opt no-new-privileges`) asks for. Without it the
    // filter loads thanks to CAP_SYS_ADMIN, which the process still has at this point.
    #[repr(C)]
    struct Fprog {
        len: libc::c_ushort,
        filter: *const sock_filter,
    }
    let fprog = Fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel copies the program.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const Fprog,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
