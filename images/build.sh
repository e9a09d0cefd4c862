#!/bin/sh
# Build the demo image offline: a busybox-static root filesystem plus the `foo`
# service and its `fooctl` client, imported with `docker import` (no pulls).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-gateway-demo:latest}
busybox=$(command -v busybox)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/sbin" "$root/etc" "$root/tmp" "$root/root" "$root/var/run/foo" "$root/data" "$root/proc" "$root/sys" "$root/dev"
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
cp -a "$here/demo/rootfs/." "$root/"
tar -C "$root" --numeric-owner --owner=0 --group=0 -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'VOLUME ["/var/run/foo", "/data", "/etc/foo"]' \
  -c 'CMD ["/usr/local/bin/foo"]' \
  -c 'LABEL org.example.gateway.demo=1' \
  - "$tag" >/dev/null
echo "built $tag"
