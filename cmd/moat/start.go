package main

import "github.com/moatrt/moat/runtime"

var startCommand = idCommand("start", "start the process of a created container", (*runtime.Runtime).Start)
