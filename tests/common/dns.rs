//! A DNS server for tests: UDP on 127.0.0.1, answering A and SRV queries
//! from a table the test changes as it goes (TTL 0: nothing is cached).
//! It only ever hands out what the test put in the table (loopback).

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Table {
    a: HashMap<String, Vec<Ipv4Addr>>,
    srv: HashMap<String, Vec<(String, u16)>>,
}

/// The server; stops when dropped.
pub struct Dns {
    pub addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Names are compared without their final dot, in lower case.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Dns {
    pub fn start() -> Dns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let table = Arc::new(Mutex::new(Table::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (table.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer(&t.lock().unwrap(), &buf[..n]) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        Dns {
            addr,
            table,
            stop,
            thread: Some(thread),
        }
    }

    /// `name` has these A records from now on (none: the name is unknown).
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        self.table.lock().unwrap().a.insert(key(name), ips.to_vec());
    }

    /// `name` has these SRV records (target, port) from now on.
    pub fn set_srv(&self, name: &str, targets: &[(&str, u16)]) {
        let targets = targets.iter().map(|(t, p)| (key(t), *p)).collect();
        self.table.lock().unwrap().srv.insert(key(name), targets);
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(table: &Table, query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let mut reply = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    let mut known = false;
    for q in &query.queries {
        reply.queries.push(q.clone());
        let name = key(&q.name().to_utf8());
        let owner = q.name().clone();
        match q.query_type() {
            RecordType::A => {
                if let Some(ips) = table.a.get(&name) {
                    known = true;
                    for ip in ips {
                        reply
                            .answers
                            .push(Record::from_rdata(owner.clone(), 0, RData::A(A(*ip))));
                    }
                }
            }
            RecordType::SRV => {
                if let Some(targets) = table.srv.get(&name) {
                    known = true;
                    for (target, port) in targets {
                        let target = Name::from_ascii(format!("{target}.")).ok()?;
                        let srv = SRV::new(0, 0, *port, target);
                        reply
                            .answers
                            .push(Record::from_rdata(owner.clone(), 0, RData::SRV(srv)));
                    }
                }
            }
            // Known names have no other records (AAAA included).
            _ => known |= table.a.contains_key(&name) || table.srv.contains_key(&name),
        }
    }
    if !known {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    reply.to_vec().ok()
}
