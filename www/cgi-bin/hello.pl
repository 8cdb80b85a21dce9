#!/usr/bin/env perl
# CGI demo in Perl: a header block, a blank line, an HTML body.
use strict;
use warnings;

sub escape_html {
    my ($text) = @_;
    $text =~ s/&/&amp;/g;
    $text =~ s/</&lt;/g;
    $text =~ s/>/&gt;/g;
    $text =~ s/"/&quot;/g;
    return $text;
}

my $query  = escape_html($ENV{QUERY_STRING} // '');
my $method = escape_html($ENV{REQUEST_METHOD} // '');
my $perl   = escape_html(sprintf('%vd', $^V));

print "Content-Type: text/html; charset=utf-8\r\n\r\n";
print <<"HTML";
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>hello.pl</title>
<link rel="icon" href="/assets/logo.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/style.css"></head>
<body>
<header class="top"><a href="/"><img src="/assets/logo.svg" alt="webserv"></a></header>
<main>
<h1>Hello from Perl $perl!</h1>
<p>Method: <code>$method</code>, query string: <code>$query</code>.</p>
<p><a href="/">Back to the front page</a></p>
</main></body>
</html>
HTML
