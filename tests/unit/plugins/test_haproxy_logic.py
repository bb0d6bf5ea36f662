"""Pure logic of haproxy_frontend: validation, rendering, and parsing HAProxy's CLI answers."""

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import haproxy
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

SHOW_PROC = """#<PID>          <type>          <reloads>       <uptime>        <version>
25992           master          3 [failed: 1]   0d00h00m29s     2.6.12-1+deb12u4
# workers
26170           worker          1               0d00h00m06s     2.6.12-1+deb12u4
26180           worker          0               0d00h00m01s     2.6.12-1+deb12u4
# programs
26190           sidecar         0               0d00h00m01s     -
"""

SERVERS_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state \
bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr \
srv_agent_addr srv_agent_port
3 web 1 s1 ::1 2 0 1 1 1 1 0 2 0 0 0 0 - 18081 - 0 0 - - 0
3 web 2 s2 ::1 2 8 1 1 0 1 0 2 0 0 0 0 - 18082 - 0 0 - - 0
3 web 3 s3 ::1 0 1 1 1 0 1 0 0 0 0 0 0 - 18083 - 0 0 - - 0
4 other 1 s1 ::1 0 1 1 1 0 1 0 0 0 0 0 0 - 18083 - 0 0 - - 0
"""


def params(**extra):
    base = {"name": "web", "state": "present", "bind": ["[::]:80"], "mode": "http", "servers": [],
            "balance": "roundrobin", "health_check": None, "frontend_options": [], "backend_options": []}
    base.update(extra)
    return base


def server(**extra):
    base = {"name": "a", "address": "2001:db8:100::5", "port": 80}
    base.update(extra)
    return base


def test_render_writes_ipv6_in_brackets_and_one_file_per_proxy():
    tls = {"address": "[2001:db8::10]:443", "certificate": "/etc/haproxy/web.pem", "options": ["alpn h2,http/1.1"]}
    want = haproxy.wanted(params(bind=["*:80", "[::]:80", tls],
                                 servers=[server(), server(name="b", address="192.0.2.7", port=8080, weight=5,
                                                           backup=True, check=False)],
                                 health_check={"http_path": "/healthz"}))
    text = haproxy.render(want)
    assert text.startswith(haproxy.HEADER)
    assert "frontend web\n    mode http\n    bind *:80\n    bind [::]:80 v6only\n" in text
    assert "    bind [2001:db8::10]:443 v6only ssl crt /etc/haproxy/web.pem alpn h2,http/1.1\n" in text
    assert "    default_backend web\n\nbackend web\n" in text
    assert "    server a [2001:db8:100::5]:80 check weight 1\n" in text
    assert "    server b 192.0.2.7:8080 weight 5 backup\n" in text
    assert "    option httpchk\n    http-check send meth GET uri /healthz\n    http-check expect status 200\n" in text
    assert haproxy.file_name("web") == "50-web.cfg"


def test_an_ipv6_wildcard_takes_ipv4_only_when_no_ipv4_wildcard_does():
    text = haproxy.render(haproxy.wanted(params(bind=["[::]:80", "[::]:443", "0.0.0.0:443"])))
    assert "    bind [::]:80 v4v6\n    bind [::]:443 v6only\n    bind 0.0.0.0:443\n" in text


def test_health_check_as_ansible_passes_it_with_unset_suboptions_as_none():
    health = {"interval": 500, "rise": None, "fall": None, "http_path": "/", "http_method": None,
              "expect_status": None}
    want = haproxy.wanted(params(health_check=health))
    assert want["health_check"] == {"interval": 500, "rise": 2, "fall": 3, "http_path": "/", "http_method": "GET",
                                    "expect_status": 200}


def test_a_specific_ipv6_bind_says_v6only_so_reloads_hand_the_socket_over():
    text = haproxy.render(haproxy.wanted(params(bind=["[2001:db8::1]:80", "192.0.2.1:80",
                                                      {"address": "[2001:db8::2]:80", "options": ["v6only"]}])))
    assert "    bind [2001:db8::1]:80 v6only\n    bind 192.0.2.1:80\n    bind [2001:db8::2]:80 v6only\n" in text


def test_render_is_stable_and_states_are_not_in_the_file():
    one = haproxy.render(haproxy.wanted(params(servers=[server(state="drain")])))
    two = haproxy.render(haproxy.wanted(params(servers=[server(state="ready")])))
    assert one == two


@pytest.mark.parametrize("value,expected", [
    ("192.0.2.1:80", ("192.0.2.1", 80)),
    ("[2001:db8::1]:443", ("2001:db8::1", 443)),
    ("*:8080", ("*", 8080)),
    (":80", ("*", 80)),
    (443, ("*", 443)),
])
def test_split_endpoint(value, expected):
    assert haproxy.split_endpoint("bind", value) == expected


@pytest.mark.parametrize("extra,parameter", [
    ({"name": "web frontend"}, "name"),
    ({"name": "web\nbackend x"}, "name"),
    ({"name": ""}, "name"),
    ({"bind": []}, "bind"),
    ({"bind": ["2001:db8::1:80"]}, "bind[0]"),
    ({"bind": ["192.0.2.1"]}, "bind[0]"),
    ({"bind": ["192.0.2.1:0"]}, "bind[0]"),
    ({"bind": ["192.0.2.1:70000"]}, "bind[0]"),
    ({"bind": ["300.1.1.1:80"]}, "bind[0]"),
    ({"bind": ["[ff02::1]:80"]}, "bind[0]"),
    ({"bind": ["*:80", "*:80"]}, "bind[1]"),
    ({"bind": [{"address": "*:443", "certificate": "relative.pem"}]}, "bind[0].certificate"),
    ({"bind": [{"address": "*:443", "crt": "/x.pem"}]}, "bind[0]"),
    ({"bind": [{"address": "*:443", "options": ["ssl\nfrontend evil"]}]}, "bind[0].options"),
    ({"mode": "udp"}, "mode"),
    ({"balance": "fastest"}, "balance"),
    ({"servers": [server(), server()]}, "servers"),
    ({"servers": [server(name="a b")]}, "servers[0].name"),
    ({"servers": [server(address="2001:db8::1]:80 check\nbackend x")]}, "servers[0].address"),
    ({"servers": [server(address="10.0.0.1 backup")]}, "servers[0].address"),
    ({"servers": [server(port=0)]}, "servers[0].port"),
    ({"servers": [server(port="80; rm")]}, "servers[0].port"),
    ({"servers": [server(weight=257)]}, "servers[0].weight"),
    ({"servers": [server(weight=-1)]}, "servers[0].weight"),
    ({"servers": [server(state="down")]}, "servers[0].state"),
    ({"servers": [server(check="maybe")]}, "servers[0].check"),
    ({"servers": ["a"]}, "servers[0]"),
    ({"servers": [{"name": "a", "port": 80}]}, "servers[0].address"),
    ({"health_check": {"http_path": "healthz"}}, "health_check.http_path"),
    ({"health_check": {"http_path": "/a b"}}, "health_check.http_path"),
    ({"health_check": {"expect_status": 200}}, "health_check.expect_status"),
    ({"health_check": {"http_path": "/", "expect_status": 700}}, "health_check.expect_status"),
    ({"health_check": {"interval": 0}}, "health_check.interval"),
    ({"health_check": {"http_method": "DELETE", "http_path": "/"}}, "health_check.http_method"),
    ({"health_check": {"http_path": "/"}, "mode": "tcp"}, "health_check.http_path"),
    ({"frontend_options": ["backend evil"]}, "frontend_options"),
    ({"frontend_options": ["option forwardfor\nlisten x"]}, "frontend_options"),
    ({"backend_options": ["# comment"]}, "backend_options"),
    ({"backend_options": [""]}, "backend_options"),
])
def test_bad_input_names_the_parameter(extra, parameter):
    with pytest.raises(ParameterError) as err:
        haproxy.wanted(params(**extra))
    assert err.value.parameter == parameter


def test_server_host_names_are_allowed_but_not_numbers_that_look_like_names():
    want = haproxy.wanted(params(servers=[server(address="app1.example.org")]))
    assert want["servers"][0]["address"] == "app1.example.org"
    with pytest.raises(ParameterError):
        haproxy.wanted(params(servers=[server(address="10.0.0")]))


def test_show_proc():
    proc = haproxy.parse_show_proc(SHOW_PROC)
    assert proc["master"] == {"pid": 25992, "reloads": 3, "failed": 1}
    assert proc["workers"] == [{"pid": 26170, "reloads": 1}, {"pid": 26180, "reloads": 0}]
    with pytest.raises(ValueError):
        haproxy.parse_show_proc("Unknown command\n")


def test_servers_state_maps_admin_bits():
    assert haproxy.parse_servers_state(SERVERS_STATE, "web") == {"s1": "ready", "s2": "drain", "s3": "maint"}
    assert haproxy.parse_servers_state(SERVERS_STATE, "other") == {"s1": "maint"}
    assert haproxy.parse_servers_state("1\n", "web") == {}
