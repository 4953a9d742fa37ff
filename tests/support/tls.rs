//! Throwaway TLS material for test servers: a private CA and a server certificate for
//! a loopback address, made with the `openssl` command line in a given folder. Clients under test trust
//! the CA file explicitly, so certificate checks stay on.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run_checked;

pub struct TestCertificates {
    /// The CA certificate clients should trust (PEM).
    pub ca_file: PathBuf,
    /// The server's certificate (PEM), valid for its loopback IP.
    pub cert_file: PathBuf,
    /// The server's private key (PEM).
    pub key_file: PathBuf,
}

impl TestCertificates {
    pub fn generate(dir: &Path) -> TestCertificates {
        TestCertificates::generate_for(dir, "127.0.0.1")
    }

    /// A CA and a server certificate for the loopback address `ip`.
    pub fn generate_for(dir: &Path, ip: &str) -> TestCertificates {
        let path = |name: &str| dir.join(name);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run_checked(
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(ec)
                .arg("-keyout")
                .arg(path("ca.key"))
                .arg("-out")
                .arg(path("ca.pem"))
                .args(["-days", "2", "-subj", "/CN=attest test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
            "openssl: test CA",
        );
        run_checked(
            Command::new("openssl")
                .arg("req")
                .args(ec)
                .arg("-keyout")
                .arg(path("server.key"))
                .arg("-out")
                .arg(path("server.csr"))
                .args(["-subj", &format!("/CN={ip}")]),
            "openssl: server key",
        );
        std::fs::write(
            path("server.ext"),
            format!(
                "subjectAltName=IP:{ip}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .expect("write server.ext");
        run_checked(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-set_serial", "2"])
                .arg("-in")
                .arg(path("server.csr"))
                .arg("-CA")
                .arg(path("ca.pem"))
                .arg("-CAkey")
                .arg(path("ca.key"))
                .arg("-extfile")
                .arg(path("server.ext"))
                .arg("-out")
                .arg(path("server.pem")),
            "openssl: server certificate",
        );
        TestCertificates {
            ca_file: path("ca.pem"),
            cert_file: path("server.pem"),
            key_file: path("server.key"),
        }
    }
}
