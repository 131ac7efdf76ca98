//! wasmlet's `sh`: the subset of a POSIX shell that lifecycle hooks use, as a WASI command.
//!
//! `sh -c SCRIPT` runs commands separated by `;`, `&&`, `||` or newlines, with redirections
//! (`>`, `>>`, `2>`, `2>>`, `2>&1`, `>&2`, `/dev/null`), single and double quotes, backslash
//! escapes, `$NAME`, `${NAME}` and `$?`. The commands are built in: `sleep`, `echo`, `cat`,
//! `touch`, `rm`, `mkdir`, `test`/`[`, `true`, `false`, `exit` and `:`. Anything else — another
//! program, a pipe, a subshell, backgrounding — fails with a message that says so (status 127,
//! or 2 for syntax wasmlet's sh does not support; WASI 0.2 reports any failure as exit code 1).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

const BUILTINS: &str = "sleep, echo, cat, touch, rm, mkdir, test, [, true, false, exit, :";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let script = match args.get(1).map(String::as_str) {
        Some("-c") => match args.get(2) {
            Some(script) => script.clone(),
            None => fail(2, "-c needs a script"),
        },
        Some(other) => fail(
            2,
            &format!("only `sh -c SCRIPT` is supported, not `sh {other}` (no script files)"),
        ),
        None => {
            let mut script = String::new();
            let _ = io::stdin().read_to_string(&mut script);
            script
        }
    };
    let status = match parse(&script) {
        Ok(list) => run(&list),
        Err(message) => fail(2, &message),
    };
    std::process::exit(status);
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("sh: {message}");
    std::process::exit(code);
}

/// How a command is joined to the one before it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Join {
    Always,
    IfSucceeded,
    IfFailed,
}

/// A word as written: parts to expand (`$NAME`) or keep.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// A variable; `quoted` inside double quotes (an unquoted one that is empty vanishes).
    Variable {
        name: String,
        quoted: bool,
    },
}

type Word = Vec<Part>;

#[derive(Debug, Default)]
struct Command {
    words: Vec<Word>,
    /// Redirections, applied in order (`> f 2>&1` differs from `2>&1 > f`).
    redirects: Vec<Redirect>,
}

#[derive(Debug)]
enum Redirect {
    /// `N>` / `N>>` a file.
    File { fd: u8, append: bool, file: Word },
    /// `N>&M`.
    Dup { fd: u8, to: u8 },
}

#[derive(Debug)]
enum Token {
    Word(Word),
    Join(Join),
    Redirect { fd: u8, append: bool },
    Dup { fd: u8, to: u8 },
}

fn parse(script: &str) -> Result<Vec<(Join, Command)>, String> {
    let tokens = tokenize(script)?;
    let mut list = Vec::new();
    let mut join = Join::Always;
    let mut command = Command::default();
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => command.words.push(word),
            Token::Redirect { fd, append } => match tokens.next() {
                Some(Token::Word(file)) => {
                    command.redirects.push(Redirect::File { fd, append, file })
                }
                _ => return Err("`>` needs a file name".into()),
            },
            Token::Dup { fd, to } => command.redirects.push(Redirect::Dup { fd, to }),
            Token::Join(next) => {
                if command.words.is_empty() {
                    if next == Join::Always && command.redirects.is_empty() {
                        continue; // An empty command between `;`s or newlines.
                    }
                    return Err(
                        "syntax error: a command is missing before `&&`, `||` or `;`".into(),
                    );
                }
                list.push((join, std::mem::take(&mut command)));
                join = next;
            }
        }
    }
    if !command.words.is_empty() {
        list.push((join, command));
    } else if join != Join::Always {
        return Err("syntax error: a command is missing after `&&` or `||`".into());
    }
    Ok(list)
}

fn tokenize(script: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = script.chars().peekable();
    let mut word: Word = Vec::new();
    let mut text = String::new();
    let mut in_word = false;
    let flush =
        |word: &mut Word, text: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
            if !text.is_empty() {
                word.push(Part::Text(std::mem::take(text)));
            }
            if *in_word {
                tokens.push(Token::Word(std::mem::take(word)));
                *in_word = false;
            }
        };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => flush(&mut word, &mut text, &mut in_word, &mut tokens),
            '\n' | ';' => {
                flush(&mut word, &mut text, &mut in_word, &mut tokens);
                tokens.push(Token::Join(Join::Always));
            }
            '#' if !in_word => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            '&' => {
                flush(&mut word, &mut text, &mut in_word, &mut tokens);
                if chars.next_if_eq(&'&').is_some() {
                    tokens.push(Token::Join(Join::IfSucceeded));
                } else {
                    return Err("`&` (running in the background) is not supported".into());
                }
            }
            '|' => {
                flush(&mut word, &mut text, &mut in_word, &mut tokens);
                if chars.next_if_eq(&'|').is_some() {
                    tokens.push(Token::Join(Join::IfFailed));
                } else {
                    return Err("pipes (`|`) are not supported".into());
                }
            }
            '>' => {
                // `2>`: a number written right before `>` is the descriptor, not a word.
                let fd = if in_word && word.is_empty() && (text == "1" || text == "2") {
                    let fd = if text == "2" { 2 } else { 1 };
                    text.clear();
                    in_word = false;
                    fd
                } else {
                    flush(&mut word, &mut text, &mut in_word, &mut tokens);
                    1
                };
                if chars.next_if_eq(&'&').is_some() {
                    match chars.next() {
                        Some('1') => tokens.push(Token::Dup { fd, to: 1 }),
                        Some('2') => tokens.push(Token::Dup { fd, to: 2 }),
                        _ => return Err("`>&` takes 1 or 2".into()),
                    }
                } else {
                    let append = chars.next_if_eq(&'>').is_some();
                    tokens.push(Token::Redirect { fd, append });
                }
            }
            '<' | '(' | ')' | '`' => {
                return Err(format!(
                    "`{c}` (input redirection, subshells, command substitution) is not supported"
                ));
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => text.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => text.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                text.push('\\');
                                text.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some('$') => variable(&mut chars, &mut word, &mut text, true)?,
                        Some(c) => text.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => text.push(c),
                }
            }
            '$' => {
                in_word = true;
                variable(&mut chars, &mut word, &mut text, false)?;
            }
            c => {
                in_word = true;
                text.push(c);
            }
        }
    }
    flush(&mut word, &mut text, &mut in_word, &mut tokens);
    Ok(tokens)
}

/// After a `$`: `NAME`, `{NAME}` or `?`; a lone `$` is itself.
fn variable(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    word: &mut Word,
    text: &mut String,
    quoted: bool,
) -> Result<(), String> {
    let name = if chars.next_if_eq(&'{').is_some() {
        let mut name = String::new();
        loop {
            match chars.next() {
                Some('}') => break,
                Some(c) => name.push(c),
                None => return Err("unterminated `${`".into()),
            }
        }
        name
    } else if chars.next_if_eq(&'?').is_some() {
        "?".to_string()
    } else if chars.peek() == Some(&'(') {
        return Err("command substitution (`$(…)`) is not supported".into());
    } else {
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
        }
        name
    };
    if name.is_empty() {
        text.push('$');
    } else {
        if !text.is_empty() {
            word.push(Part::Text(std::mem::take(text)));
        }
        word.push(Part::Variable { name, quoted });
    }
    Ok(())
}

fn expand(word: &Word, status: i32) -> String {
    word.iter()
        .map(|part| match part {
            Part::Text(text) => text.clone(),
            Part::Variable { name, .. } if name == "?" => status.to_string(),
            Part::Variable { name, .. } => std::env::var(name).unwrap_or_default(),
        })
        .collect()
}

/// A word made only of unquoted variables that expand to nothing is no word at all, as in a
/// POSIX shell (`[ -n $UNSET ]` is `[ -n ]`).
fn vanishes(word: &Word, expanded: &str) -> bool {
    expanded.is_empty()
        && word
            .iter()
            .all(|part| matches!(part, Part::Variable { quoted: false, .. }))
}

/// Where a descriptor writes.
#[derive(Clone, PartialEq)]
enum Destination {
    Stdout,
    Stderr,
    Null,
    File { path: String, append: bool },
}

fn writer(destination: &Destination) -> io::Result<Box<dyn Write>> {
    Ok(match destination {
        Destination::Stdout => Box::new(io::stdout()),
        Destination::Stderr => Box::new(io::stderr()),
        Destination::Null => Box::new(io::sink()),
        Destination::File { path, append } => Box::new(
            OpenOptions::new()
                .create(true)
                .write(true)
                .append(*append)
                .truncate(!*append)
                .open(path)?,
        ),
    })
}

fn run(list: &[(Join, Command)]) -> i32 {
    let mut status = 0;
    for (join, command) in list {
        let go = match join {
            Join::Always => true,
            Join::IfSucceeded => status == 0,
            Join::IfFailed => status != 0,
        };
        if go {
            status = execute(command, status);
        }
    }
    status
}

fn execute(command: &Command, last: i32) -> i32 {
    let words: Vec<String> = command
        .words
        .iter()
        .filter_map(|word| {
            let expanded = expand(word, last);
            (!vanishes(word, &expanded)).then_some(expanded)
        })
        .collect();
    let mut destinations = [Destination::Stdout, Destination::Stderr];
    for redirect in &command.redirects {
        match redirect {
            Redirect::File { fd, append, file } => {
                let path = expand(file, last);
                destinations[usize::from(*fd - 1)] = if path == "/dev/null" {
                    Destination::Null
                } else {
                    Destination::File {
                        path,
                        append: *append,
                    }
                };
            }
            Redirect::Dup { fd, to } => {
                destinations[usize::from(*fd - 1)] = destinations[usize::from(*to - 1)].clone();
            }
        }
    }
    let err = match writer(&destinations[1]) {
        Ok(err) => Port::new(err),
        Err(error) => {
            eprintln!("sh: cannot open the file for standard error: {error}");
            return 1;
        }
    };
    // One open file for both when they go to the same file (`> f 2>&1`).
    let out = if destinations[0] == destinations[1]
        && matches!(destinations[0], Destination::File { .. })
    {
        err.clone()
    } else {
        match writer(&destinations[0]) {
            Ok(out) => Port::new(out),
            Err(error) => {
                let _ = writeln!(
                    err.clone(),
                    "sh: cannot open the file for standard output: {error}"
                );
                return 1;
            }
        }
    };
    let Some((name, args)) = words.split_first() else {
        return 0; // Only redirections, or only empty variables.
    };
    let (mut out, mut err) = (out, err);
    let status = run_builtin(name, args, last, &mut out, &mut err);
    let _ = out.flush();
    let _ = err.flush();
    status
}

/// A descriptor's writer, shareable by stdout and stderr.
#[derive(Clone)]
struct Port(std::rc::Rc<std::cell::RefCell<Box<dyn Write>>>);

impl Port {
    fn new(writer: Box<dyn Write>) -> Self {
        Port(std::rc::Rc::new(std::cell::RefCell::new(writer)))
    }
}

impl Write for Port {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

fn run_builtin(
    name: &str,
    args: &[String],
    last: i32,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    match name {
        "true" | ":" => 0,
        "false" => 1,
        "exit" => {
            let _ = out.flush();
            std::process::exit(args.first().and_then(|a| a.parse().ok()).unwrap_or(last))
        }
        "echo" => echo(args, out, err),
        "sleep" => sleep(args, err),
        "cat" => cat(args, out, err),
        "touch" => each_path(name, args, err, |path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(drop)
        }),
        "mkdir" => mkdir(args, err),
        "rm" => rm(args, err),
        "test" => test(args, err),
        "[" => match args.split_last() {
            Some((last, rest)) if last == "]" => test(rest, err),
            _ => {
                let _ = writeln!(err, "sh: [: missing `]`");
                2
            }
        },
        other => {
            let _ = writeln!(
                err,
                "sh: {other}: not supported by wasmlet's sh (it runs: {BUILTINS})"
            );
            127
        }
    }
}

fn echo(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let (newline, args) = match args.first().map(String::as_str) {
        Some("-n") => (false, &args[1..]),
        _ => (true, args),
    };
    let mut line = args.join(" ");
    if newline {
        line.push('\n');
    }
    match out.write_all(line.as_bytes()) {
        Ok(()) => 0,
        Err(error) => {
            let _ = writeln!(err, "sh: echo: {error}");
            1
        }
    }
}

fn sleep(args: &[String], err: &mut dyn Write) -> i32 {
    if args.is_empty() {
        let _ = writeln!(err, "sh: sleep: missing operand");
        return 1;
    }
    let mut total = Duration::ZERO;
    for arg in args {
        let (number, unit) = match arg.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
            Some((at, _)) => arg.split_at(at),
            None => (arg.as_str(), "s"),
        };
        let scale = match unit {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => f64::NAN,
        };
        let interval = number
            .parse::<f64>()
            .ok()
            .and_then(|value| Duration::try_from_secs_f64(value * scale).ok())
            .and_then(|interval| total.checked_add(interval));
        match interval {
            Some(sum) => total = sum,
            None => {
                let _ = writeln!(err, "sh: sleep: invalid time interval `{arg}`");
                return 1;
            }
        }
    }
    std::thread::sleep(total);
    0
}

fn cat(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut status = 0;
    for path in args {
        let copied = File::open(path).and_then(|mut file| io::copy(&mut file, out));
        if let Err(error) = copied {
            let _ = writeln!(err, "sh: cat: {path}: {error}");
            status = 1;
        }
    }
    status
}

fn each_path(
    name: &str,
    args: &[String],
    err: &mut dyn Write,
    act: impl Fn(&Path) -> io::Result<()>,
) -> i32 {
    let mut status = 0;
    for path in args {
        if let Err(error) = act(Path::new(path)) {
            let _ = writeln!(err, "sh: {name}: {path}: {error}");
            status = 1;
        }
    }
    status
}

fn mkdir(args: &[String], err: &mut dyn Write) -> i32 {
    let parents = args.iter().any(|a| a == "-p");
    let paths: Vec<String> = args.iter().filter(|a| *a != "-p").cloned().collect();
    each_path("mkdir", &paths, err, |path| {
        if parents {
            std::fs::create_dir_all(path)
        } else {
            std::fs::create_dir(path)
        }
    })
}

fn rm(args: &[String], err: &mut dyn Write) -> i32 {
    let flags: String = args
        .iter()
        .filter(|a| a.starts_with('-'))
        .flat_map(|a| a.chars().skip(1))
        .collect();
    let (force, recursive) = (
        flags.contains('f'),
        flags.contains('r') || flags.contains('R'),
    );
    let paths: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .collect();
    each_path("rm", &paths, err, |path| {
        let removed = if recursive && path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        match removed {
            Err(error) if force && error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    })
}

/// `test`: 0 when the expression holds, 1 when it does not, 2 when it is malformed.
fn test(args: &[String], err: &mut dyn Write) -> i32 {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (negate, args) = match args.split_first() {
        Some((&"!", rest)) => (true, rest.to_vec()),
        _ => (false, args),
    };
    let holds = match args.as_slice() {
        [] => Some(false),
        [one] => Some(!one.is_empty()),
        ["-e", path] => Some(Path::new(path).exists()),
        ["-f", path] => Some(Path::new(path).is_file()),
        ["-d", path] => Some(Path::new(path).is_dir()),
        ["-s", path] => Some(std::fs::metadata(path).is_ok_and(|m| m.len() > 0)),
        ["-z", text] => Some(text.is_empty()),
        ["-n", text] => Some(!text.is_empty()),
        [a, "=" | "==", b] => Some(a == b),
        [a, "!=", b] => Some(a != b),
        [a, op @ ("-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge"), b] => {
            match (a.parse::<i64>(), b.parse::<i64>()) {
                (Ok(a), Ok(b)) => Some(match *op {
                    "-eq" => a == b,
                    "-ne" => a != b,
                    "-lt" => a < b,
                    "-le" => a <= b,
                    "-gt" => a > b,
                    _ => a >= b,
                }),
                _ => None,
            }
        }
        _ => None,
    };
    match holds {
        Some(holds) if holds != negate => 0,
        Some(_) => 1,
        None => {
            let _ = writeln!(err, "sh: test: unsupported expression `{}`", args.join(" "));
            2
        }
    }
}
