//! Targeted parser behaviour: spans, error display, suggestions, directives, heredoc scripts.

use hoist_builder::dockerfile::{Command, Instruction, RunScript, parse};

fn run_of(i: &Instruction) -> &hoist_builder::dockerfile::Run {
    match i {
        Instruction::Run(r) => r,
        other => panic!("not a RUN: {other:?}"),
    }
}

#[test]
fn workir_error_names_file_line_and_suggests() {
    let e = parse(
        "FROM node:9.4\nRUN mkdir -p /app\nWORKIR /app\n",
        "Dockerfile",
    )
    .unwrap_err();
    assert_eq!((e.line, e.column, e.len), (3, 1, 6));
    assert_eq!(
        e.to_string(),
        "Dockerfile:3:1: unknown instruction: WORKIR (did you mean WORKDIR?)\n 3 | WORKIR /app\n   | ^^^^^^"
    );
    // far from every instruction: no suggestion
    let e = parse("FROM a\nFOOBARBAZ x\n", "f").unwrap_err();
    assert_eq!(e.message, "unknown instruction: FOOBARBAZ");
    // case is kept in the message, suggestions ignore it
    let e = parse("FROM a\ncpy a b\n", "f").unwrap_err();
    assert_eq!(e.message, "unknown instruction: cpy (did you mean COPY?)");
}

#[test]
fn spans_cover_continuations_and_heredocs() {
    let src = "FROM a\n\n  RUN echo one \\\n     two\nCOPY <<EOF /x\nbody\nEOF\nRUN true\n";
    let df = parse(src, "f").unwrap();
    let ins = &df.stages[0].instructions;
    assert_eq!((ins[0].line, ins[0].column, ins[0].end_line), (3, 3, 4));
    assert_eq!(ins[0].source, "RUN echo one      two");
    assert_eq!((ins[1].line, ins[1].end_line), (5, 7));
    assert_eq!((ins[2].line, ins[2].end_line), (8, 8));
    // flags only lead the arguments: after a source, `--bogus=1` is a path (as in docker)
    let df = parse("FROM a\nCOPY a \\\n  --bogus=1 b\n", "f").unwrap();
    assert!(
        matches!(&df.stages[0].instructions[0].kind, Instruction::Copy(c) if c.sources == ["a", "--bogus=1"])
    );
    // an error on a continuation line points there
    let e = parse("FROM a\nCOPY \\\n  --bogus=1 a b\n", "f").unwrap_err();
    assert_eq!((e.line, e.column), (3, 3), "{e}");
    assert!(
        e.to_string()
            .ends_with(" 3 |   --bogus=1 a b\n   |   ^^^^^^^^^"),
        "{e}"
    );
}

#[test]
fn directives_only_at_the_top() {
    let df = parse("# escape=`\nFROM a\nRUN echo a `\n  b\nCOPY x c:\\\n", "f").unwrap();
    assert_eq!(df.directives.escape, '`');
    let ins = &df.stages[0].instructions;
    assert_eq!(
        run_of(&ins[0].kind).command,
        Command::Shell("echo a   b".into())
    );
    match &ins[1].kind {
        Instruction::Copy(c) => assert_eq!(c.dest, "c:\\"),
        other => panic!("{other:?}"),
    }
    // after an instruction, `# escape=` is a comment
    let df = parse("FROM a\n# escape=`\nRUN echo \\\n  x\n", "f").unwrap();
    assert_eq!(df.directives.escape, '\\');
    assert_eq!(
        run_of(&df.stages[0].instructions[0].kind).command,
        Command::Shell("echo   x".into())
    );
    // unknown directive names are comments and end the directive block
    let df = parse("# foo=bar\n# syntax=x\nFROM a\n", "f").unwrap();
    assert_eq!(df.directives.syntax, None);
}

#[test]
fn heredoc_scripts_as_docker_runs_them() {
    let df = parse(
        "FROM a\nRUN <<EOF\necho hi\nEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN cat <<A > /a && cat <<-B\nx\nA\n\ty\n\tB\nRUN echo plain\nRUN [\"echo\", \"x\"]\n",
        "f",
    )
    .unwrap();
    let ins = &df.stages[0].instructions;
    assert_eq!(
        run_of(&ins[0].kind).script(),
        Some(RunScript::Shell("echo hi\n".into()))
    );
    assert_eq!(
        run_of(&ins[1].kind).script(),
        Some(RunScript::Shebang(
            "#!/usr/bin/env python3\nprint(1)\n".into()
        ))
    );
    assert_eq!(
        run_of(&ins[2].kind).script(),
        Some(RunScript::Shell(
            "cat <<A > /a && cat <<-B\nx\nA\ny\nB".into()
        ))
    );
    assert_eq!(
        run_of(&ins[3].kind).script(),
        Some(RunScript::Shell("echo plain".into()))
    );
    assert_eq!(run_of(&ins[4].kind).script(), None);
}

#[test]
fn stages_by_name_or_index_and_global_args() {
    let df = parse(
        "ARG V=1\nARG W\nFROM a:$V AS Build\nFROM build\nCOPY --from=build /x /y\n",
        "f",
    )
    .unwrap();
    assert_eq!(df.global_args.len(), 2);
    assert_eq!(df.global_args[0].default.as_deref(), Some("1"));
    assert_eq!(df.stage("BUILD").map(|(i, _)| i), Some(0));
    assert_eq!(
        df.stage("1").map(|(i, s)| (i, s.base.as_str())),
        Some((1, "build"))
    );
    assert!(df.stage("nope").is_none());
}

#[test]
fn exec_form_only_for_json_string_arrays() {
    let df = parse(
        "FROM a\nCMD [\"a\", \"b\"]\nCMD [\"a\" \"b\"]\nENTRYPOINT []\nCMD [\"unterminated\"\nSHELL [\"pwsh\", \"-c\"]\n",
        "f",
    )
    .unwrap();
    let ins = &df.stages[0].instructions;
    assert_eq!(
        ins[0].kind,
        Instruction::Cmd(Command::Exec(vec!["a".into(), "b".into()]))
    );
    assert_eq!(
        ins[1].kind,
        Instruction::Cmd(Command::Shell("[\"a\" \"b\"]".into()))
    );
    assert_eq!(ins[2].kind, Instruction::Entrypoint(Command::Exec(vec![])));
    assert_eq!(
        ins[3].kind,
        Instruction::Cmd(Command::Shell("[\"unterminated\"".into()))
    );
    assert_eq!(
        ins[4].kind,
        Instruction::Shell(vec!["pwsh".into(), "-c".into()])
    );
    let e = parse("FROM a\nRUN [\"a\", null]\n", "f").unwrap_err();
    assert_eq!(
        e.message,
        "when using JSON array syntax, arrays must be comprised of strings only"
    );
}

#[test]
fn missing_arguments_are_named() {
    for (src, msg) in [
        ("FROM a\nRUN\n", "RUN requires at least one argument"),
        ("FROM a\nWORKDIR\n", "WORKDIR requires exactly one argument"),
        ("FROM a\nUSER  \n", "USER requires exactly one argument"),
        ("FROM a\nEXPOSE\n", "EXPOSE requires at least one argument"),
        ("FROM a\nENV\n", "ENV requires at least one argument"),
        ("FROM a\nENV ONLYNAME\n", "ENV must have two arguments"),
        ("FROM a\nARG\n", "ARG requires at least one argument"),
        ("FROM a\nCOPY\n", "COPY requires at least two arguments"),
        ("FROM a\nADD x\n", "ADD requires at least two arguments"),
        (
            "FROM a\nHEALTHCHECK CMD\n",
            "missing command after HEALTHCHECK CMD",
        ),
        (
            "FROM a\nHEALTHCHECK NONE x\n",
            "HEALTHCHECK NONE takes no arguments",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=-1 CMD x\n",
            "--retries cannot be negative (-1)",
        ),
        (
            "FROM a\nHEALTHCHECK --timeout=10us CMD x\n",
            "interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "FROM a\nONBUILD\n",
            "ONBUILD requires at least one argument",
        ),
        ("FROM\n", "FROM requires the name of a base image"),
        ("FROM a\nCMD\n", "CMD requires at least one argument"),
        ("FROM a\nSHELL []\n", "SHELL requires at least one argument"),
        (
            "FROM a\nCOPY --chown=1 --from=x --chmod 7 a b\n",
            "missing a value on flag: chmod",
        ),
        ("FROM a\nADD --from=x a b\n", "unknown flag: from"),
        (
            "FROM a\nCOPY --checksum=sha256:0 a b\n",
            "unknown flag: checksum",
        ),
        (
            "FROM --platfrom=linux/amd64 a\n",
            "unknown flag: platfrom (did you mean platform?)",
        ),
        (
            "FROM a\nRUN --mount=type=secret,id=x,sharing=locked true\n",
            "--mount: unexpected key 'sharing' for mount type 'secret'",
        ),
        (
            "FROM a\nRUN --mount=type=tmpfs,target=/t,size=lots true\n",
            "--mount: invalid size \"lots\"",
        ),
        (
            "FROM a\nRUN --mount=type=cache,target=/t,mode=999 true\n",
            "--mount: invalid value 999 for mode: expected octal",
        ),
        (
            "FROM a\nRUN --mount=type=bind,target=/t,bogus true\n",
            "--mount: invalid field 'bogus' must be a key=value pair",
        ),
        (
            "FROM a\nRUN --security=root true\n",
            "unsupported security mode \"root\"",
        ),
    ] {
        let e = parse(src, "f").unwrap_err();
        assert!(e.message.starts_with(msg), "{src:?}: {e}");
        assert_eq!(e.file, "f");
    }
}

#[test]
fn crlf_and_bom_are_handled() {
    let df = parse("\u{feff}FROM a\r\nRUN echo x \\\r\n  y\r\n", "f").unwrap();
    assert_eq!(
        run_of(&df.stages[0].instructions[0].kind).command,
        Command::Shell("echo x   y".into())
    );
}
