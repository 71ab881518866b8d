#!/usr/bin/env bash
# Writes a loopback-only Janus configuration into the folder given: the HTTP
# transport on 127.0.0.1, the VideoRoom plugin, no STUN/TURN, no NAT
# mapping. Janus (libnice) never gathers loopback candidates, so ICE uses the
# host's first address only: packets to the host's own address still travel
# over the kernel's loopback device (benches/support/janus.rs binds its peers
# to the same address).
#     scripts/janus-config.sh DIR [HTTP_PORT]
set -euo pipefail
dir=$1
port=${2:-18088}
ip=$(hostname -I | awk '{print $1}')
mkdir -p "$dir"
cat > "$dir/janus.jcfg" <<CFG
general: {
	configs_folder = "$dir"
	plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins"
	transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports"
	events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
	loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers"
	debug_level = 3
	admin_secret = "bench-only"
	session_timeout = 0
}
certificates: {
}
media: {
	rtp_port_range = "30000-60000"
}
nat: {
	nice_debug = false
	ice_lite = false
	ice_enforce_list = "$ip"
	ignore_mdns = true
}
plugins: {
	disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}
transports: {
	disable = "libjanus_websockets.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}
events: {
	broadcast = false
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
CFG
cat > "$dir/janus.transport.http.jcfg" <<CFG
general: {
	json = "compact"
	base_path = "/janus"
	http = true
	port = $port
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_base_path = "/admin"
	admin_http = false
}
cors: {
}
CFG
cat > "$dir/janus.plugin.videoroom.jcfg" <<CFG
general: {
}
room-1234: {
	description = "Bench"
	publishers = 1
	bitrate = 0
	fir_freq = 2
	audiocodec = "opus"
	videocodec = "vp8"
	audiolevel_ext = false
	videoorient_ext = false
	playoutdelay_ext = false
	transport_wide_cc_ext = false
}
CFG
