//! A real DNS server on loopback (hickory-server, UDP and TCP on the same 127.0.0.1 port) whose
//! answers each test writes: records, NXDOMAIN, NODATA, SERVFAIL, or silence (a timeout).
//! Every query is logged so tests can assert what was (not) asked.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};

/// TTL of every record and of negative answers (SOA minimum).
pub const TTL: u32 = 300;

/// What the server answers for one (name, type).
#[derive(Debug, Clone)]
pub enum DnsAnswer {
    /// These records.
    Records(Vec<Record>),
    /// NXDOMAIN with an SOA (cacheable).
    NxDomain,
    /// NOERROR without records, with an SOA (cacheable).
    NoData,
    /// SERVFAIL.
    ServFail,
    /// No answer at all: the client times out.
    Silence,
}

type Zone = Arc<Mutex<HashMap<(String, RecordType), DnsAnswer>>>;
type QueryLog = Arc<Mutex<Vec<(String, RecordType)>>>;

/// A running DNS server; stops when dropped.
pub struct TestDns {
    /// The address (same port for UDP and TCP).
    pub addr: SocketAddr,
    zone: Zone,
    log: QueryLog,
    task: tokio::task::JoinHandle<()>,
}

struct Handler {
    zone: Zone,
    log: QueryLog,
}

fn fqdn(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

fn soa() -> Record {
    let soa = SOA::new(
        Name::from_str("ns.test.").expect("name"),
        Name::from_str("hostmaster.test.").expect("name"),
        1,
        3600,
        600,
        86400,
        TTL,
    );
    Record::from_rdata(Name::from_str("test.").expect("name"), TTL, RData::SOA(soa))
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let mut header = Header::response_from_request(request.header());
        let Ok(info) = request.request_info() else {
            header.set_response_code(ResponseCode::FormErr);
            return header.into();
        };
        // A-labels as sent (Display would decode punycode to Unicode).
        let name = fqdn(&Name::from(info.query.name().clone()).to_ascii());
        let rtype = info.query.query_type();
        self.log.lock().expect("log").push((name.clone(), rtype));
        let answer = {
            let zone = self.zone.lock().expect("zone");
            match zone.get(&(name.clone(), rtype)) {
                Some(answer) => answer.clone(),
                None if zone.keys().any(|(known, _)| *known == name) => DnsAnswer::NoData,
                None => DnsAnswer::NxDomain,
            }
        };
        header.set_authoritative(true);
        let builder = MessageResponseBuilder::from_message_request(request);
        let soa = [soa()];
        let sent = match &answer {
            DnsAnswer::Silence => return header.into(),
            DnsAnswer::ServFail => {
                response.send_response(builder.error_msg(request.header(), ResponseCode::ServFail)).await
            }
            DnsAnswer::NxDomain => {
                header.set_response_code(ResponseCode::NXDomain);
                response.send_response(builder.build(header, [], [], soa.iter(), [])).await
            }
            DnsAnswer::NoData => response.send_response(builder.build(header, [], [], soa.iter(), [])).await,
            DnsAnswer::Records(records) => {
                response.send_response(builder.build(header, records.iter(), [], [], [])).await
            }
        };
        sent.unwrap_or_else(|_| header.into())
    }
}

impl TestDns {
    /// Starts a server on 127.0.0.1 (UDP and TCP on one port) that knows nothing yet.
    pub async fn start() -> TestDns {
        let zone = Zone::default();
        let log = QueryLog::default();
        let mut server = ServerFuture::new(Handler { zone: zone.clone(), log: log.clone() });
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("addr");
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5));
        let task = tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        TestDns { addr, zone, log, task }
    }

    /// Sets the answer for `name` and `rtype`.
    pub fn set(&self, name: &str, rtype: RecordType, answer: DnsAnswer) {
        self.zone.lock().expect("zone").insert((fqdn(name), rtype), answer);
    }

    /// SRV records `(priority, weight, port, target)` for `name`; target "." is the root.
    pub fn srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let owner = Name::from_str(&fqdn(name)).expect("name");
        let records = records
            .iter()
            .map(|(priority, weight, port, target)| {
                let target = if *target == "." { Name::root() } else { Name::from_str(&fqdn(target)).expect("name") };
                Record::from_rdata(owner.clone(), TTL, RData::SRV(SRV::new(*priority, *weight, *port, target)))
            })
            .collect();
        self.set(name, RecordType::SRV, DnsAnswer::Records(records));
    }

    /// A records for `name`.
    pub fn a(&self, name: &str, addresses: &[Ipv4Addr]) {
        let owner = Name::from_str(&fqdn(name)).expect("name");
        let records =
            addresses.iter().map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A::from(*ip)))).collect();
        self.set(name, RecordType::A, DnsAnswer::Records(records));
    }

    /// AAAA records for `name`.
    pub fn aaaa(&self, name: &str, addresses: &[Ipv6Addr]) {
        let owner = Name::from_str(&fqdn(name)).expect("name");
        let records =
            addresses.iter().map(|ip| Record::from_rdata(owner.clone(), TTL, RData::AAAA(AAAA::from(*ip)))).collect();
        self.set(name, RecordType::AAAA, DnsAnswer::Records(records));
    }

    /// Every query received so far, as (lowercase FQDN, type).
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        self.log.lock().expect("log").clone()
    }

    /// How many times `name`/`rtype` was asked.
    pub fn count(&self, name: &str, rtype: RecordType) -> usize {
        let name = fqdn(name);
        self.queries().iter().filter(|(asked, t)| *asked == name && *t == rtype).count()
    }

    /// `ip:port` for `[dns] nameservers`.
    pub fn nameserver(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}
