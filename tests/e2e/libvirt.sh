# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Two libvirt hosts on one machine, for e2e tests (sourced after lib.sh):
# each host is a libvirtd in its own network, mount and UTS namespaces, with
# its own /run, /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt,
# /var/log/libvirt, host UUID and hostname; the two are joined by a veth pair
# (198.18.0.1 and 198.18.0.2) and nothing else.
#
#   lv_init                    skips (77) without libvirtd, virsh, unshare or namespaces
#   lv_host NAME ADDR          starts host NAME; its files are under $E2E_TMP/NAME
#   lv_virsh NAME ARGS...      virsh against host NAME
#   lv_in NAME CMD...          CMD in host NAME's network namespace (the host's files as they are)
#   lv_spawn_in NAME P CMD...  e2e_spawn P in host NAME's network namespace
#   lv_define NAME VM MIB CMDLINE [DISK]   defines and starts VM (the e2e guest) on host NAME
#   lv_serial NAME VM          the file holding VM's console on host NAME (as seen from here)
#
# Host paths seen from inside: /run/migrelay is $E2E_TMP/NAME/mig, /run/libvirt
# is $E2E_TMP/NAME/run, /var/lib/libvirt/images is $E2E_TMP/NAME/images.

declare -gA LV_NS=()

lv_init() {
	local t
	for t in libvirtd virsh unshare ip qemu-img; do
		command -v "$t" >/dev/null 2>&1 || e2e_skip "$t not found (scripts/deps installs libvirt)"
	done
	[ "$(id -u)" = 0 ] || e2e_skip "needs root for network and mount namespaces"
	ip netns add "mr-lvprobe-$$" 2>/dev/null || e2e_skip "cannot create network namespaces here"
	ip netns del "mr-lvprobe-$$"
	unshare --mount --uts --propagation private true 2>/dev/null || e2e_skip "cannot create mount namespaces here"
}

# lv_host NAME ADDR: the first host made gets the veth pair; the second joins it.
lv_host() {
	local name=$1 addr=$2 d=$E2E_TMP/$1 ns="mr-lv-$$-$1" uuid i
	mkdir -p "$d"/{etc/qemu,run,lib/qemu,lib/images,cache,log/qemu,mig}
	uuid=$(cat /proc/sys/kernel/random/uuid)
	cat >"$d/etc/libvirtd.conf" <<CONF
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "$uuid"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
	cat >"$d/etc/qemu.conf" <<CONF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
CONF
	cp /etc/libvirt/libvirt.conf "$d/etc/" 2>/dev/null || true
	ip netns add "$ns" || e2e_fail "ip netns add $ns"
	e2e_on_exit "ip netns del $ns 2>/dev/null"
	LV_NS[$name]=$ns
	ip -n "$ns" link set lo up
	if [ "${#LV_NS[@]}" = 1 ]; then
		ip link add "mrlv$$a" netns "$ns" type veth peer name "mrlv$$b" || e2e_fail "veth"
		ip -n "$ns" link set "mrlv$$a" name mr0
	else
		ip link set "mrlv$$b" netns "$ns" || e2e_fail "veth into $ns"
		ip -n "$ns" link set "mrlv$$b" name mr0
	fi
	ip -n "$ns" addr add "$addr/24" dev mr0
	ip -n "$ns" link set mr0 up
	# /run and /var are tmpfs of the host's own: no system bus, no machined, no other daemon's sockets
	e2e_spawn "libvirtd-$name" ip netns exec "$ns" unshare --mount --uts --propagation private bash -c "
		set -e
		mount -t tmpfs -o mode=0755 tmpfs /run
		mount -t tmpfs -o mode=0755 tmpfs /var
		mkdir -p /run/libvirt /run/migrelay /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /var/tmp
		mount --bind '$d/run' /run/libvirt
		mount --bind '$d/mig' /run/migrelay
		mount --bind '$d/etc' /etc/libvirt
		mount --bind '$d/lib' /var/lib/libvirt
		mount --bind '$d/cache' /var/cache/libvirt
		mount --bind '$d/log' /var/log/libvirt
		hostname '$name'
		exec libvirtd"
	# libvirtd leaves its guests running when it stops: end them first (this runs before e2e_cleanup stops libvirtd)
	e2e_on_exit "lv_end_guests $name"
	for ((i = 0; i < 300; i++)); do
		[ -S "$d/run/libvirt-sock" ] && lv_virsh "$name" version >/dev/null 2>&1 && return 0
		e2e_alive "libvirtd-$name" || break
		sleep 0.1
	done
	cat "$d/log/libvirtd.log" >&2 2>/dev/null || true
	e2e_fail "libvirtd on $name did not start"
}

# lv_end_guests NAME: destroys every guest of host NAME, then ends by PID
# (libvirt's own pid files) any QEMU of that host that is still there.
lv_end_guests() {
	local name=$1 vm f pid
	for vm in $(lv_virsh "$name" list --name 2>/dev/null); do
		lv_virsh "$name" destroy "$vm" >/dev/null 2>&1 || true
	done
	for f in "$E2E_TMP/$name"/run/qemu/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f" 2>/dev/null) || continue
		[ -n "$pid" ] && grep -qa 'qemu-system' "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	done
	return 0
}

lv_virsh() {
	local name=$1
	shift
	virsh -q -c "qemu+unix:///system?socket=$E2E_TMP/$name/run/libvirt-sock" "$@"
}

lv_in() {
	local name=$1
	shift
	ip netns exec "${LV_NS[$name]}" "$@"
}

lv_spawn_in() {
	local name=$1 proc=$2
	shift 2
	e2e_spawn "$proc" ip netns exec "${LV_NS[$name]}" "$@"
}

lv_serial() { echo "$E2E_TMP/$1/log/qemu/$2-serial.log"; }

# lv_define NAME VM MIB CMDLINE [DISK]: the e2e guest as a libvirt domain
# (console in a file, DISK a qcow2 image under /var/lib/libvirt/images, node
# "vda"), defined and started on host NAME.
lv_define() {
	local name=$1 vm=$2 mib=$3 cmdline=$4 disk=${5:-} type=qemu xml=$E2E_TMP/$1-$2.xml diskxml=""
	[ "${E2E_ACCEL:-tcg}" = kvm ] && type=kvm
	if [ -n "$disk" ]; then
		diskxml="<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
			<source file='/var/lib/libvirt/images/$disk'/><target dev='vda' bus='virtio'/></disk>"
	fi
	cat >"$xml" <<XML
<domain type='$type'>
  <name>$vm</name>
  <memory unit='MiB'>$mib</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$E2E_GUEST</kernel>
    <cmdline>$cmdline</cmdline>
  </os>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v "$E2E_QEMU")</emulator>
    $diskxml
    <serial type='file'><source path='/var/log/libvirt/qemu/$vm-serial.log'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
	lv_virsh "$name" define "$xml" >/dev/null || e2e_fail "virsh define $vm on $name"
	lv_virsh "$name" start "$vm" >/dev/null || e2e_fail "virsh start $vm on $name"
}
