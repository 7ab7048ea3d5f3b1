<?php
class Email
{
    const VERSION = '1';

    public function send(): string
    {
        return 'email v' . self::VERSION;
    }
}
