<?php
// Benchmark FastCGI script: the same 40-byte body as the nginx backend (bench/hello_asgi.py BODY).
header("Content-Type: text/plain");
echo "Hello from the Director benchmark! (40B)";
