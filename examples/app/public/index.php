<?php
// The example app: two classes in two files, like a real app's Email/Notification pair.
// If a request ever ran one file from one release and the other from another, it would
// fail loudly instead of quietly mixing versions.
require __DIR__ . '/../src/Email.php';
require __DIR__ . '/../src/Notification.php';

header('Content-Type: text/plain');
echo (new Notification())->send(), "\n";
