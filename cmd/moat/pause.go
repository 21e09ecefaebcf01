package main

import "github.com/moatrt/moat/runtime"

var (
	pauseCommand  = idCommand("pause", "freeze every process of the container", (*runtime.Runtime).Pause)
	resumeCommand = idCommand("resume", "thaw a paused container", (*runtime.Runtime).Resume)
)
