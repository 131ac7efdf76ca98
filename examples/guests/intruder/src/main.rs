//! A plain command that tries to leave its sandbox and says how each attempt went, one line
//! each, for the sandbox tests:
//! `--read PATH` (a file), `--list DIR` (a directory), `--env NAME` (a variable), `--connect
//! HOST:PORT` (a TCP connection), `--resolve NAME` (a DNS lookup), `--vars` (how many variables
//! it sees), `--args` (how many arguments).

use std::io::Read as _;
use std::net::{TcpStream, ToSocketAddrs};

fn main() {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--read" => {
                let path = value();
                let mut text = String::new();
                match std::fs::File::open(&path).and_then(|mut file| file.read_to_string(&mut text)) {
                    Ok(_) => println!("read {path}: allowed ({} bytes)", text.len()),
                    Err(error) => println!("read {path}: denied ({error})"),
                }
            }
            "--list" => {
                let dir = value();
                match std::fs::read_dir(&dir) {
                    Ok(entries) => println!("list {dir}: allowed ({} entries)", entries.count()),
                    Err(error) => println!("list {dir}: denied ({error})"),
                }
            }
            "--env" => {
                let name = value();
                match std::env::var(&name) {
                    Ok(found) => println!("env {name}: set ({found})"),
                    Err(_) => println!("env {name}: unset"),
                }
            }
            "--connect" => {
                let address = value();
                match TcpStream::connect(&address) {
                    Ok(_) => println!("connect {address}: allowed"),
                    Err(error) => println!("connect {address}: denied ({error})"),
                }
            }
            "--resolve" => {
                let name = value();
                match (name.as_str(), 80).to_socket_addrs() {
                    Ok(found) => println!("resolve {name}: allowed ({} addresses)", found.count()),
                    Err(error) => println!("resolve {name}: denied ({error})"),
                }
            }
            "--vars" => println!("vars: {}", std::env::vars().count()),
            "--args" => println!("args: {}", std::env::args().count()),
            other => println!("unknown attempt {other}"),
        }
    }
}
