#!/usr/bin/env bash
# Captures a real terminal session of a failing run (the tutorial's programs
# with their defects unlisted) in tmux, mid-run (progress bar) and at the end
# (coloured verdicts, failures as timelines), and renders both to PNG for the
# docs: docs/img/terminal-progress.png, docs/img/terminal-failures.png, plus
# the plain text in docs/img/terminal-failures.txt.
# Needs: tmux, chromium, g++, a venv with ansi2html (pip install ansi2html).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-target/ci-venv/bin/python}
cargo build --quiet --release -p shmconf -p shmconf-harness --bins
work=$(mktemp -d)
trap 'tmux kill-session -t shmconf-capture 2>/dev/null || true; rm -rf "$work"' EXIT
chmod 755 "$work"
g++ -std=c++11 -o "$work/writer" harness/tests/original/writer.cpp 2>/dev/null
g++ -std=c++11 -o "$work/reader" harness/tests/original/reader.cpp 2>/dev/null
sed '/^\[deviations\./,$d' harness/tests/original/impl.toml >"$work/impl.toml"

tmux new-session -d -s shmconf-capture -x 150 -y 42 "env PS1='$ ' bash --norc"
sleep 0.5
tmux send-keys -t shmconf-capture "cd $work && clear" Enter
sleep 0.3
tmux send-keys -t shmconf-capture "shmconf() { $PWD/target/release/shmconf \"\$@\"; }; clear" Enter
sleep 0.3
tmux send-keys -t shmconf-capture "shmconf run --impl-file impl.toml --jobs 1 $PWD/scenarios" Enter
sleep 1.2
tmux capture-pane -t shmconf-capture -e -p >"$work/progress.ansi"
for _ in $(seq 60); do
  sleep 0.5
  tmux capture-pane -t shmconf-capture -p -S -1000 | grep -q '^shmconf: .* passed' && break
done
tmux capture-pane -t shmconf-capture -e -p -S -1000 >"$work/end.ansi"
tmux capture-pane -t shmconf-capture -p -S -1000 | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' >docs/img/terminal-failures.txt

render() { # ansi file, png, lines to keep (from the end; 0: all), height
  local lines=$3
  # Trailing blank lines off (an idle pane's bottom), then the last lines.
  if [ "$lines" -gt 0 ]; then sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$1" | tail -n "$lines" >"$1.cut"; else cp "$1" "$1.cut"; fi
  "$python" -m ansi2html <"$1.cut" >"$1.html"
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1250,"$4" \
    --screenshot="$2" "file://$1.html" >/dev/null 2>&1
}
render "$work/progress.ansi" docs/img/terminal-progress.png 14 330
render "$work/end.ansi" docs/img/terminal-failures.png 52 900
echo "captured: docs/img/terminal-progress.png docs/img/terminal-failures.png docs/img/terminal-failures.txt"
