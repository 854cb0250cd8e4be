#!/usr/bin/env bash
# greet LANG NAME: prints a greeting in English or French.
set -euo pipefail
case "${1:-en}" in
  fr) echo "Bonjour, ${2:-monde} !" ;;
  *) echo "Hello, ${2:-world}!" ;;
esac
