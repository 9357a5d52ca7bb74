//! TLS on the gRPC listener: server-only TLS, and mTLS with good, missing, foreign and
//! expired client certificates (all made in the test with rcgen).

use egress_e2e::certs::{TestCa, temp_dir};
use egress_e2e::{Gateway, ProxyOptions};
use egress_proto::livekit::ListEgressRequest;
use egress_proto::livekit::egress_client::EgressClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn tls_proxy(dir: &std::path::Path, ca: &TestCa, client_ca: Option<&std::path::Path>) -> Gateway {
    let server = ca.server(dir, "server");
    let mut options = ProxyOptions::default()
        .arg("--tls-cert")
        .arg(server.cert.to_str().unwrap())
        .arg("--tls-key")
        .arg(server.key.to_str().unwrap());
    if let Some(client_ca) = client_ca {
        options = options
            .arg("--tls-client-ca")
            .arg(client_ca.to_str().unwrap());
    }
    Gateway::start_dev(options)
}

async fn call(proxy: &Gateway, ca_pem: &str, identity: Option<(&str, &str)>) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{}", proxy.addr))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    EgressClient::new(channel)
        .list_egress(ListEgressRequest::default())
        .await
        .map(drop)
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test]
async fn server_tls_serves_grpc_and_refuses_plaintext() {
    let dir = temp_dir("tls");
    let ca = TestCa::new("test server CA");
    let proxy = tls_proxy(&dir, &ca, None);
    call(&proxy, &ca.pem(), None).await.expect("TLS call");

    let plaintext = Channel::from_shared(proxy.url()).unwrap().connect().await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(channel) => EgressClient::new(channel)
            .list_egress(ListEgressRequest::default())
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a plaintext client must not get through a TLS listener"
    );

    let other_ca = TestCa::new("someone else");
    assert!(
        call(&proxy, &other_ca.pem(), None).await.is_err(),
        "a client that doesn't trust the server's CA fails"
    );
}

#[tokio::test]
async fn mtls_requires_a_valid_client_certificate_from_the_ca() {
    let dir = temp_dir("mtls");
    let ca = TestCa::new("test CA");
    let client_ca = ca.write(&dir, "client-ca.pem");
    let proxy = tls_proxy(&dir, &ca, Some(&client_ca));

    let good = ca.client(&dir, "good", "recorder.prod.svc", false);
    call(&proxy, &ca.pem(), Some((&good.cert_pem, &good.key_pem)))
        .await
        .expect("a certificate from the CA is accepted");

    let missing = call(&proxy, &ca.pem(), None).await;
    assert!(missing.is_err(), "no client certificate: {missing:?}");

    let rogue_ca = TestCa::new("rogue CA");
    let rogue = rogue_ca.client(&dir, "rogue", "recorder.prod.svc", false);
    let foreign = call(&proxy, &ca.pem(), Some((&rogue.cert_pem, &rogue.key_pem))).await;
    assert!(foreign.is_err(), "certificate from another CA: {foreign:?}");

    let expired = ca.client(&dir, "expired", "recorder.prod.svc", true);
    let stale = call(
        &proxy,
        &ca.pem(),
        Some((&expired.cert_pem, &expired.key_pem)),
    )
    .await;
    assert!(stale.is_err(), "expired certificate: {stale:?}");
}

#[test]
fn unreadable_tls_files_exit_2() {
    let out = std::process::Command::new(egress_e2e::proxy_bin())
        .args(["--dev", "--listen", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");
}
