#!/bin/sh
# Installs a headless-capable Chromium for the report rendering test (tests/test_design_report.py).
set -e
apt-get update
apt-get install -y --no-install-recommends chromium
