<?php
class Notification
{
    const VERSION = '1';

    public function send(): string
    {
        if (Email::VERSION !== self::VERSION) {
            http_response_code(500);
            throw new RuntimeException('mixed versions: Notification v' . self::VERSION . ', Email v' . Email::VERSION);
        }
        return 'version ' . self::VERSION . ' (' . (new Email())->send() . ')';
    }
}
