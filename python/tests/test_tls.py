"""TLS: echo through hpsock on both ends, the options as keyword arguments
and properties, a clear close error with its reason, configuration errors.
Certificates: tests/fixtures/tls (see gen.sh there)."""

import shutil
import subprocess

import pytest

import hpsock
from support import FIXTURES, Recorder

TLS = FIXTURES / "tls"


class CloseReason(Recorder):
    """Records on_close with the TLS reason read inside the handler (the
    only place it is available)."""

    def on_close(self, ep, conn, op, error):
        reason = ep.tls_error(conn) if error else ""
        self.record("close", conn, op, error, reason)

    def on_handshake(self, ep, conn):
        self.record("handshake", conn, ep.tls_info(conn, hpsock.TlsInfo.VERSION),
                    ep.tls_info(conn, hpsock.TlsInfo.PEER_SUBJECT))


class Echo(CloseReason):
    def on_receive(self, ep, conn, data):
        super().on_receive(ep, conn, data)
        ep.send(conn, data)


def tls_server(handler, **options):
    return hpsock.TcpServer(handler, workers=1, tls=True,
                            tls_cert_file=TLS / "server.pem",
                            tls_key_file=TLS / "server.key", **options)


def test_tls_echo_server_and_client():
    srv_rec, cli_rec = Echo(), CloseReason()
    with tls_server(srv_rec) as server, \
            hpsock.TcpClient(cli_rec, tls=True, tls_ca_file=str(TLS / "ca.pem"),
                             tls_sni="localhost") as client:
        server.start("127.0.0.1", 0)
        _, port = server.listen_address
        client.start("127.0.0.1", port)
        (_, conn, version, subject), = cli_rec.wait_event("handshake")
        assert version.startswith("TLSv1.")
        assert "CN=localhost" in subject
        payload = bytes(range(256)) * 400  # 100 KiB: several records
        client.send(payload)
        cli_rec.wait(lambda r: len(r.received.get(conn, b"")) >= len(payload),
                     what="the echo")
        assert bytes(cli_rec.received[conn]) == payload
        assert client.tls_info(0, hpsock.TlsInfo.SERVER_NAME) == "localhost"
        # graceful: close_notify, a normal close on the server
        client.disconnect(0)
        (_, _, op, error, _), = srv_rec.wait_event("close")
        assert (op, error) == (hpsock.Op.RECEIVE, 0)


def test_wrong_ca_is_a_verify_close_error_with_a_reason():
    srv_rec, ag_rec = Echo(), CloseReason()
    with tls_server(srv_rec) as server, \
            hpsock.TcpAgent(ag_rec, tls=True,
                            tls_ca_file=str(TLS / "wrong_ca.pem")) as agent:
        server.start("127.0.0.1", 0)
        _, port = server.listen_address
        agent.start()
        conn = agent.connect("127.0.0.1", port)
        (_, _, op, error, reason), = ag_rec.wait_event("close", conn)
        assert op == hpsock.Op.CONNECT
        assert error == hpsock.ETLSVERIFY
        assert hpsock.err_name(error) == "HPS_ETLSVERIFY"
        assert "certificate verify failed" in reason
        assert not ag_rec.of("handshake")


def test_options_as_properties_and_string_options():
    with hpsock.TcpAgent() as agent:
        assert agent.tls is False
        assert agent.tls_verify == hpsock.TlsVerify.PEER
        assert agent.tls_min_version == hpsock.TLS_V1_2
        agent.tls_min_version = hpsock.TLS_V1_3
        assert agent.getopt(hpsock.Option.TLS_MIN_VERSION) == 0x0304
        assert agent.tls_ciphers == ""
        agent.tls_ciphers = "HIGH:!aNULL"
        assert agent.getopt_str(hpsock.StrOption.TLS_CIPHERS) == "HIGH:!aNULL"
        agent.tls_ciphers = None
        assert agent.tls_ciphers == ""
        with pytest.raises(hpsock.Error) as e:
            agent.setopt_str(hpsock.Option.TLS, "1")
        assert e.value.code == hpsock.EINVAL
        with pytest.raises(hpsock.Error) as e:
            agent.getopt_str(90)
        assert e.value.code == hpsock.EINVAL
        with pytest.raises(TypeError):
            hpsock.TcpAgent(tls_no_such_option=1)


def test_bad_certificate_fails_start_with_a_reason():
    with hpsock.TcpServer(tls=True, tls_cert_file=str(TLS / "server.pem"),
                          tls_key_file=str(TLS / "other.key")) as server:
        with pytest.raises(hpsock.Error) as e:
            server.start("127.0.0.1", 0)
        assert e.value.code == hpsock.ETLSCONFIG
        assert "mismatch" in server.tls_config_error()


def test_sni_certificate_on_the_server():
    srv_rec, ag_rec = Echo(), CloseReason()
    with tls_server(srv_rec) as server, \
            hpsock.TcpAgent(ag_rec, tls=True, tls_ca_file=str(TLS / "ca.pem"),
                            tls_sni="x.sni.test") as agent:
        server.tls_add_cert("*.sni.test", TLS / "other.pem",
                            (TLS / "other.key").read_text())
        server.start("127.0.0.1", 0)
        _, port = server.listen_address
        agent.start()
        conn = agent.connect("127.0.0.1", port)
        (_, _, _, subject), = ag_rec.wait_event("handshake", conn)
        assert "CN=other.test" in subject


def takes_key_password():
    """Whether this engine has HPS_OPT_TLS_KEY_PASSWORD (issue 19)."""
    with hpsock.TcpServer() as srv:
        try:
            srv.tls_key_password = "probe"
        except hpsock.Error as e:
            if e.code == hpsock.EINVAL:
                return False
            raise
    return True


PASSWORD = "hpsock-test-password"  # of the fixtures' encrypted keys


@pytest.fixture
def encrypted_keys(tmp_path):
    """server.key encrypted with PASSWORD, as PKCS#8 and as traditional
    PEM encryption: tests/fixtures/tls/server_enc*.key, or made here the
    way gen.sh makes them when the fixtures predate them."""
    if not takes_key_password():
        pytest.skip("this engine does not take HPS_OPT_TLS_KEY_PASSWORD yet")
    keys = [TLS / "server_enc.key", TLS / "server_enc_legacy.key"]
    if all(k.exists() for k in keys):
        return keys
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no encrypted key fixtures and no openssl to make them")
    keys = [tmp_path / "server_enc.key", tmp_path / "server_enc_legacy.key"]
    for cmd, out in ((["pkey"], keys[0]), (["ec"], keys[1])):
        subprocess.run([openssl, *cmd, "-in", str(TLS / "server.key"), "-aes-256-cbc",
                        "-passout", "pass:" + PASSWORD, "-out", str(out)],
                       check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return keys


def handshake_with(server):
    """Start server, connect a verifying client, echo once."""
    rec = CloseReason()
    server.start("127.0.0.1", 0)
    with hpsock.TcpClient(rec, tls=True, tls_ca_file=str(TLS / "ca.pem"),
                          tls_sni="localhost") as client:
        client.start("127.0.0.1", server.listen_address[1])
        (_, conn, _, subject), = rec.wait_event("handshake")
        assert "CN=localhost" in subject
        client.send(b"through an encrypted key")
        rec.wait(lambda r: bytes(r.received.get(conn, b"")) == b"through an encrypted key",
                 what="the echo")


def test_encrypted_key_with_its_password(encrypted_keys):
    for path in encrypted_keys:
        assert "ENCRYPTED" in path.read_text(), path
        with hpsock.TcpServer(Echo(), workers=1, tls=True,
                              tls_cert_file=TLS / "server.pem", tls_key_file=path,
                              tls_key_password=PASSWORD) as server:
            handshake_with(server)
        with hpsock.TcpServer(Echo(), workers=1, tls=True,
                              tls_cert_file=TLS / "server.pem",
                              tls_key_pem=path.read_text(),
                              tls_key_password=PASSWORD) as server:
            handshake_with(server)


@pytest.mark.parametrize("password", [None, "wrong"])
def test_encrypted_key_without_its_password_fails_start_never_prompts(encrypted_keys, password):
    opts = {} if password is None else {"tls_key_password": password}
    for path in encrypted_keys:
        with hpsock.TcpServer(Echo(), workers=1, tls=True,
                              tls_cert_file=TLS / "server.pem", tls_key_file=path,
                              **opts) as server:
            with pytest.raises(hpsock.Error) as e:
                server.start("127.0.0.1", 0)
            assert e.value.code == hpsock.ETLSCONFIG, path
            assert "password" in server.tls_config_error().lower(), \
                (path, server.tls_config_error())


def test_private_key_options_are_write_only():
    with tls_server(Echo(), tls_key_pem=(TLS / "server.key").read_text()) as server:
        for name in ("tls_key_pem", "tls_key_password"):
            with pytest.raises(AttributeError):
                getattr(server, name)
        if not takes_key_password():
            return  # the engine's side comes with the password option
        server.tls_key_password = "secret"
        for key in (hpsock.StrOption.TLS_KEY_PEM, hpsock.StrOption.TLS_KEY_PASSWORD):
            with pytest.raises(hpsock.Error) as e:
                server.getopt_str(key)
            assert e.value.code == hpsock.EINVAL, key
        server.tls_key_password = None  # clears it
        server.start("127.0.0.1", 0)  # the plain key needs none
