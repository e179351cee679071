#!/usr/bin/env bash
# Renders a report page in headless Chromium at 1280 px: a screenshot to look at, and the page's
# scroll width (it must not exceed the window: wide tables scroll inside their own box).
#   scripts/check_report_page.sh [RESULTS_DIR] [OUT_DIR]
# Default: a report of the committed reference store, written to a temporary folder.
# Needs chromium (Debian: apt-get install chromium).
set -euo pipefail
store="${1:-baselines/reference/quick_suite}"
out="${2:-$(mktemp -d)}"
mkdir -p "$out/results"
cp -r "$store/runs" "$out/results/"
robench report --results-dir "$out/results" > /dev/null
page="$out/results/report.html"
cat > "$out/measure.html" <<HTML
<!doctype html><iframe id=f src="file://$page" style="width:1280px;height:900px;border:0"></iframe>
<script>f.onload = () => { const d = f.contentDocument.documentElement;
document.title = 'scrollWidth=' + d.scrollWidth + ' clientWidth=' + d.clientWidth; };</script>
HTML
chrome=(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars)
"${chrome[@]}" --window-size=1280,2400 --screenshot="$out/report-1280.png" "file://$page" 2>/dev/null
"${chrome[@]}" --allow-file-access-from-files --virtual-time-budget=5000 --dump-dom \
  "file://$out/measure.html" 2>/dev/null | grep -o 'scrollWidth=[0-9]* clientWidth=[0-9]*'
echo "screenshot: $out/report-1280.png"
