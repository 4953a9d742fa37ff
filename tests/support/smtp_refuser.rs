//! A scripted SMTP server for fault tests: it greets, accepts EHLO and MAIL FROM, then answers
//! every RCPT TO with a fixed reply (e.g. `451 try later` or `550 no such user`). It never
//! accepts a message. Runs on a thread on a free loopback port until dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct SmtpRefuser {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// RCPT TO commands answered so far.
    recipients_refused: Arc<AtomicUsize>,
}

impl SmtpRefuser {
    /// Answers every RCPT TO with `reply` (a full SMTP reply line such as `550 5.1.1 no`).
    pub fn start(reply: &'static str) -> SmtpRefuser {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted SMTP server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let (stop_flag, counter) = (stop.clone(), refused.clone());
        std::thread::spawn(move || {
            while !stop_flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let counter = counter.clone();
                        std::thread::spawn(move || converse(stream, reply, &counter));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        SmtpRefuser {
            port,
            stop,
            recipients_refused: refused,
        }
    }

    pub fn recipients_refused(&self) -> usize {
        self.recipients_refused.load(Ordering::Relaxed)
    }
}

impl Drop for SmtpRefuser {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn converse(stream: TcpStream, reply: &str, refused: &AtomicUsize) {
    let _ = stream.set_nonblocking(false);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let _ = writer.write_all(b"220 scripted.test ESMTP\r\n");
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        let command = line.trim_end().to_ascii_uppercase();
        let answer = if command.starts_with("EHLO") {
            "250-scripted.test\r\n250 8BITMIME\r\n".to_string()
        } else if command.starts_with("HELO") || command.starts_with("MAIL FROM") {
            "250 ok\r\n".to_string()
        } else if command.starts_with("RCPT TO") {
            refused.fetch_add(1, Ordering::Relaxed);
            format!("{reply}\r\n")
        } else if command.starts_with("QUIT") {
            let _ = writer.write_all(b"221 bye\r\n");
            return;
        } else {
            "250 ok\r\n".to_string()
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}
