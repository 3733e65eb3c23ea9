//! `tollgate serve` over TLS, with certificates made in the test by the
//! `openssl` command line and a real TLS client (reqwest with rustls).

use std::path::Path;
use std::process::Command;

use crate::support::{Server, write};

/// Whether the `openssl` command is there to make certificates.
fn have_openssl() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        crate::support::skip("no `openssl`");
    }
    found
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `ca`, and `name.pem`/`name.key` signed by it for 127.0.0.1.
fn pki(dir: &Path, ca: &str, names: &[&str]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
    write(
        dir,
        "san.cnf",
        b"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    for name in names {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                "san.cnf",
            ],
        );
    }
}

fn client(dir: &Path, ca: &str, identity: Option<&str>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = std::fs::read(dir.join(format!("{ca}.pem"))).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap());
    if let Some(name) = identity {
        let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
        pem.extend(std::fs::read(dir.join(format!("{name}.key"))).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

async fn healthz(client: &reqwest::Client, addr: &str) -> Result<u16, reqwest::Error> {
    client
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_tls_and_reloads_certificates_on_sighup() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path(), "ca", &["server"]);
    let p = |f: &str| dir.path().join(f).display().to_string();
    let server = Server::start(&[
        "--insecure-no-auth",
        "--tls-cert",
        &p("server.pem"),
        "--tls-key",
        &p("server.key"),
    ]);
    assert_eq!(
        healthz(&client(dir.path(), "ca", None), &server.addr)
            .await
            .unwrap(),
        200
    );
    // Plain HTTP to the TLS port gets no answer it could read.
    assert!(crate::support::http(&server.addr, "GET", "/healthz", &[], b"").is_err_or_not_ok());

    // New certificates from another CA, then SIGHUP: the new chain serves.
    let other = tempfile::tempdir().unwrap();
    pki(other.path(), "ca2", &["server"]);
    std::fs::copy(
        other.path().join("server.pem"),
        dir.path().join("server.pem"),
    )
    .unwrap();
    std::fs::copy(
        other.path().join("server.key"),
        dir.path().join("server.key"),
    )
    .unwrap();
    server.signal("HUP");
    let fresh = client(other.path(), "ca2", None);
    let mut ok = false;
    for _ in 0..50 {
        if healthz(&fresh, &server.addr).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        ok,
        "the reloaded certificate is not served: {}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_with_a_client_ca() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path(), "ca", &["server", "flagger"]);
    let p = |f: &str| dir.path().join(f).display().to_string();
    let server = Server::start(&[
        "--insecure-no-auth",
        "--tls-cert",
        &p("server.pem"),
        "--tls-key",
        &p("server.key"),
        "--tls-client-ca",
        &p("ca.pem"),
    ]);
    assert!(
        healthz(&client(dir.path(), "ca", None), &server.addr)
            .await
            .is_err(),
        "no client certificate"
    );
    assert_eq!(
        healthz(&client(dir.path(), "ca", Some("flagger")), &server.addr)
            .await
            .unwrap(),
        200
    );
}

trait NotOk {
    fn is_err_or_not_ok(&self) -> bool;
}

impl NotOk for std::io::Result<crate::support::HttpResponse> {
    fn is_err_or_not_ok(&self) -> bool {
        self.as_ref().map_or(true, |r| r.status != 200)
    }
}
