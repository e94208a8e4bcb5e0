#!/usr/bin/env bash
# Starts the S3 server the remote-cache tests use: moto (scripts/s3/venv.sh) on 127.0.0.1 only,
# with IAM enforced, one bucket and two users: a writer (s3:*) and a reader (GetObject and
# ListBucket only), so the tests can show that read-only credentials read and cannot push.
# moto honours conditional puts (`If-None-Match: *` → 412), which the manifest upload relies
# on. Idempotent: a server this script started and that still answers is reused.
#
# Prints shell `export` lines for the tests (eval them):
#   VAEPIPE_S3_ENDPOINT  http://127.0.0.1:PORT
#   VAEPIPE_S3_BUCKET    the bucket
#   VAEPIPE_S3_WRITER    ACCESS_KEY:SECRET of the writer
#   VAEPIPE_S3_READER    ACCESS_KEY:SECRET of the reader
# Stop it with: kill "$(cat ~/.cache/vaepipe/moto-server/pid)"
set -euo pipefail
cd "$(dirname "$0")/../.."

port="${VAEPIPE_S3_PORT:-5391}"
cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
state="$cache/moto-server"
moto_server="$(scripts/s3/venv.sh)"
python="$(dirname "$moto_server")/python"
mkdir -p "$state"

answers() {
  "$python" - "$port" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2)
except Exception:
    sys.exit(1)
PY
}

if [ -f "$state/pid" ] && [ -f "$state/env" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null && answers; then
  cat "$state/env"
  exit 0
fi
if [ -f "$state/pid" ]; then kill "$(cat "$state/pid")" 2>/dev/null || true; fi
rm -f "$state/pid" "$state/env"

# IAM is enforced after the first 7 requests: exactly the set-up below (1 bucket, 2 × (user,
# policy, access key)); every later request must be signed by one of the two users.
INITIAL_NO_AUTH_ACTION_COUNT=7 setsid nohup "$moto_server" -H 127.0.0.1 -p "$port" \
  >"$state/log" 2>&1 </dev/null &
echo $! >"$state/pid"

"$python" - "$port" "$state/env" <<'PY'
import json, socket, sys, time
port, env_file = int(sys.argv[1]), sys.argv[2]
for _ in range(150):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(f"moto_server did not listen on 127.0.0.1:{port}")
import boto3
kw = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
          aws_access_key_id="setup", aws_secret_access_key="setup")
s3, iam = boto3.client("s3", **kw), boto3.client("iam", **kw)
bucket = "vaepipe-tests"
s3.create_bucket(Bucket=bucket)
def user(name, actions):
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="cache", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return f'{k["AccessKeyId"]}:{k["SecretAccessKey"]}'
writer = user("cache-writer", ["s3:*"])
reader = user("cache-reader", ["s3:GetObject", "s3:ListBucket"])
with open(env_file + ".tmp", "w") as f:
    f.write(f"export VAEPIPE_S3_ENDPOINT=http://127.0.0.1:{port}\n")
    f.write(f"export VAEPIPE_S3_BUCKET={bucket}\n")
    f.write(f"export VAEPIPE_S3_WRITER='{writer}'\n")
    f.write(f"export VAEPIPE_S3_READER='{reader}'\n")
import os
os.replace(env_file + ".tmp", env_file)
PY
cat "$state/env"
