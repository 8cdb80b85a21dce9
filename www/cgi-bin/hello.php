#!/usr/bin/env php-cgi
<?php
// CGI demo for php-cgi: PHP sends its own header block (Content-Type, Status).
header('Content-Type: text/html; charset=utf-8');
$name = isset($_GET['name']) ? $_GET['name'] : 'world';
$e = function ($s) { return htmlspecialchars((string) $s, ENT_QUOTES, 'UTF-8'); };
?>
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>hello.php</title>
<link rel="icon" href="/assets/logo.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/style.css"></head>
<body>
<header class="top"><a href="/"><img src="/assets/logo.svg" alt="webserv"></a></header>
<main>
<h1>Hello, <?= $e($name) ?>, from PHP <?= $e(PHP_VERSION) ?>!</h1>
<p>Method: <code><?= $e($_SERVER['REQUEST_METHOD'] ?? '') ?></code>,
   script: <code><?= $e($_SERVER['SCRIPT_NAME'] ?? '') ?></code>,
   query string: <code><?= $e($_SERVER['QUERY_STRING'] ?? '') ?></code>.</p>
<p><a href="/">Back to the front page</a></p>
</main></body>
</html>
