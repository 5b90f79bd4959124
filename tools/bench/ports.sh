# Sourced by the benchmark, soak and CLI test scripts.
# `free_ports`: prints a port P for a server to listen on, with P + 1 free
# too (a metrics port beside it). Below 32768: the kernel's ephemeral
# ports (32768-60999 by default), which outgoing connections and servers
# listening on port 0 take, are never picked, and no listener answers on
# either port now.
free_ports() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null &&
      ! (exec 3<> "/dev/tcp/127.0.0.1/$((p + 1))") 2> /dev/null; then
      break
    fi
  done
  echo "$p"
}
