# shellcheck shell=bash
# The local certificate authority and the HTTPS server certificates it issues,
# shared by scripts/secrets.sh (the compose deploy's tls_cert/tls_key) and
# scripts/run-local.sh (TLS=1). Source it; it defines functions only, and
# needs openssl on PATH.

# tls_san_list "HOSTS": the subjectAltName of a server certificate: localhost,
# loopback, then HOSTS (names or addresses, separated by spaces or commas;
# TLS_HOSTNAMES in secrets.sh). Exits 1 on a value that is neither.
tls_san_list() {
    local san="DNS:localhost,IP:127.0.0.1,IP:::1" host
    for host in $(printf '%s' "${1:-}" | tr ',' ' '); do
        if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then
            san+=",IP:$host"
        elif [[ $host =~ ^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
            san+=",DNS:$host"
        else
            echo "error: TLS_HOSTNAMES: '$host' is neither a host name nor an address" >&2
            exit 1
        fi
    done
    printf '%s' "$san"
}

# tls_make_ca CA CA_KEY: a new local certificate authority (ECDSA P-256, 10
# years): CA 0644, its key CA_KEY 0600. It signs server certificates only
# (keyCertSign), nothing else.
tls_make_ca() {
    local ca=$1 ca_key=$2
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$ca_key" \
        -out "$ca" -days 3650 -sha256 -subj "/CN=items local CA $(hostname 2>/dev/null || echo host)" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    chmod 0600 "$ca_key"
    chmod 0644 "$ca"
}

# tls_issue_server_cert CA CA_KEY CERT KEY SAN TMPDIR: a new key (ECDSA P-256)
# into KEY and a certificate for it (397 days, the longest browsers accept,
# serverAuth only) from the CA into CERT; the request and the extensions go
# through TMPDIR. The serial file openssl leaves beside the CA is removed:
# -CAcreateserial draws a random serial each time.
tls_issue_server_cert() {
    local ca=$1 ca_key=$2 cert=$3 key=$4 san=$5 tmpdir=$6 csr ext
    csr=$(mktemp "$tmpdir/.csr.XXXXXX")
    ext=$(mktemp "$tmpdir/.ext.XXXXXX")
    printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
        "$san" >"$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$key" \
        -subj "/CN=localhost" -out "$csr" 2>/dev/null
    openssl x509 -req -in "$csr" -CA "$ca" -CAkey "$ca_key" -CAcreateserial -days 397 -sha256 \
        -extfile "$ext" -out "$cert" 2>/dev/null
    rm -f "$csr" "$ext" "${ca%.*}.srl"
}

# tls_cert_usable CERT KEY CA SECONDS: true when CERT was issued by CA, is
# valid for at least SECONDS more and belongs to KEY (a reused RUN_DIR).
tls_cert_usable() {
    local cert=$1 key=$2 ca=$3 seconds=$4
    [[ -s $cert && -s $key && -s $ca ]] || return 1
    openssl verify -CAfile "$ca" "$cert" >/dev/null 2>&1 || return 1
    openssl x509 -in "$cert" -noout -checkend "$seconds" >/dev/null 2>&1 || return 1
    tls_key_matches "$cert" "$key"
}

# tls_key_matches CERT KEY: true when KEY is the private key of CERT's public key (and both read).
tls_key_matches() {
    local pub
    pub=$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null) || return 1
    [[ -n $pub && $pub == "$(openssl pkey -in "$2" -pubout 2>/dev/null)" ]]
}
