# Turns 'go test -bench' output of the repository benchmarks into
# markdown tables: mtuf's hash bins against one flat targets.json,
# pcr-precalc against sha256sum of the same image, and a self-update
# against curl plus sha256sum of the same release.
function metric(line, unit,    i, n, f) {
	n = split(line, f, /[ \t]+/)
	for (i = 2; i <= n; i++) if (f[i] == unit) return f[i-1]
	return ""
}
function ms(ns) { return sprintf("%.1f ms", ns / 1e6) }
function kb(b) { return sprintf("%.1f KB", b / 1000) }
/^BenchmarkPublishOne\// {
	match($1, /layout=[a-z]+/); layout = substr($1, RSTART + 7, RLENGTH - 7)
	match($1, /targets=[0-9]+/); n = substr($1, RSTART + 8, RLENGTH - 8)
	sizes[n] = 1
	pub[layout, n] = metric($0, "ns/op")
}
/^BenchmarkClientFetch\// {
	split($1, p, "/"); kind = p[2]
	match($1, /layout=[a-z]+/); layout = substr($1, RSTART + 7, RLENGTH - 7)
	match($1, /targets=[0-9]+/); n = substr($1, RSTART + 8, RLENGTH - 8)
	sizes[n] = 1
	req[kind, layout, n] = metric($0, "requests")
	byt[kind, layout, n] = metric($0, "bytes-fetched")
	tim[kind, layout, n] = metric($0, "ns/op")
}
/^BenchmarkPrecalc\// {
	split($1, p, "/"); sub(/-[0-9]+$/, "", p[2])
	pre[p[2]] = metric($0, "ns/op"); precpu[p[2]] = metric($0, "cpu-ns/op"); preorder[++npre] = p[2]
}
/^BenchmarkSelfUpdateVsCurl/ {
	selfupdate[++nself] = sprintf("| %s s (CPU %s s, peak RSS %s MiB) | %s s (CPU %s s, peak RSS %s MiB) | %s |", \
		metric($0, "update-self-s"), metric($0, "update-self-cpu-s"), metric($0, "update-self-peak-RSS-MiB"), \
		metric($0, "curl+sha256sum-s"), metric($0, "curl+sha256sum-cpu-s"), metric($0, "curl+sha256sum-peak-RSS-MiB"), \
		metric($0, "time-ratio"))
}
# The transparency log: a publish with and without it, a fresh client of
# a logged repository, the audit's speed.
/^BenchmarkPublishOneLog\// {
	match($1, /log=[a-z]+/); lg = substr($1, RSTART + 4, RLENGTH - 4)
	match($1, /targets=[0-9]+/); logn = substr($1, RSTART + 8, RLENGTH - 8)
	logpub[lg] = metric($0, "ns/op")
}
/^BenchmarkFreshClientLog/ { logreq = metric($0, "requests"); logbyt = metric($0, "bytes-fetched") }
# Each audit's baseline is the floor of the same log: reading, hashing,
# and checking the JSON and signatures of its files, and nothing more.
/^BenchmarkAudit\// {
	match($1, /targets=[0-9]+/); n = substr($1, RSTART + 8, RLENGTH - 8)
	if ($1 ~ /\/floor/) {
		floorrate[n] = metric($0, "entries/s"); floorcpu[n] = metric($0, "cpu-µs/entry"); floorkb[n] = metric($0, "KB/entry")
		next
	}
	auditn[++naudit] = n
	match($1, /over=[a-z]+/)
	auditover[naudit] = substr($1, RSTART + 5, RLENGTH - 5)
	auditrate[naudit] = metric($0, "entries/s"); auditcpu[naudit] = metric($0, "cpu-µs/entry")
}
END {
	if (logpub["true"] != "" || logreq != "" || naudit > 0) logtable()
}
function logtable() {
	print "| transparency log | figure | goal |"
	print "|---|---:|---:|"
	if (logpub["true"] != "") {
		printf "| publish one at %d targets, without the log | %s | |\n", logn, ms(logpub["false"])
		printf "| publish one at %d targets, with the log | %s | |\n", logn, ms(logpub["true"])
		printf "| the log's cost on a publish | %s | < 20 ms |\n", ms(logpub["true"] - logpub["false"])
	}
	if (logreq != "") printf "| fresh client at 100000 targets | %d requests, %s | < 150 KB |\n", logreq, kb(logbyt)
	for (i = 1; i <= naudit; i++) {
		n = auditn[i]
		printf "| audit at %d targets, from %s | %d entries/s (CPU %d µs/entry) | >= 10000 entries/s |\n", n, auditover[i] == "http" ? "HTTP" : "files", auditrate[i], auditcpu[i]
		if (floorrate[n] != "" && !floorshown[n]++)
			printf "| its floor at %d targets: read, SHA-256, JSON syntax, Ed25519 of %.1f KB/entry | %d entries/s (CPU %d µs/entry) | |\n", n, floorkb[n], floorrate[n], floorcpu[n]
	}
	print ""
}
END {
	if (nself > 0) {
		print "| mtuf client update --self | curl -o FILE, then sha256sum FILE | time ratio |"
		print "|---:|---:|---:|"
		for (i = 1; i <= nself; i++) print selfupdate[i]
		print ""
	}
	if (npre > 0 && pre["sha256sum"] != "") {
		print "| 256 MiB UKI | time | vs sha256sum of the file | CPU time | vs sha256sum |"
		print "|---|---:|---:|---:|---:|"
		for (i = 1; i <= npre; i++) {
			k = preorder[i]
			printf "| %s | %s | %.2fx | %s | %.2fx |\n", k, ms(pre[k]), pre[k] / pre["sha256sum"], ms(precpu[k]), precpu[k] / precpu["sha256sum"]
		}
		print ""
	}
	if (length(sizes) == 0) exit
	print "| targets | layout | publish one | fresh client: requests | fresh client: bytes | no-op refresh: requests | no-op refresh: bytes | warm client: time |"
	print "|---:|---|---:|---:|---:|---:|---:|---:|"
	m = 0; for (n in sizes) order[++m] = n + 0
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (order[j] < order[i]) { t = order[i]; order[i] = order[j]; order[j] = t }
	for (i = 1; i <= m; i++) {
		n = order[i]
		for (l = 1; l <= 2; l++) {
			layout = (l == 1) ? "bins" : "flat"
			name = (l == 1) ? "mtuf (bins)" : "flat targets.json"
			printf "| %d | %s | %s | %d | %s | %d | %s | %s |\n", n, name, ms(pub[layout, n]), \
				req["fresh", layout, n], kb(byt["fresh", layout, n]), \
				req["warm", layout, n], kb(byt["warm", layout, n]), ms(tim["warm", layout, n])
		}
	}
}
